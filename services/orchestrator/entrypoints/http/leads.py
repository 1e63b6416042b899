"""/v1/leads: a lead's picture, its enrollments, and erasure."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from schemas.formats import NO_CONTROL_CHARS
from services.orchestrator.domain.ranking import BadCursor, PastTime
from services.orchestrator.entrypoints.http.dependencies import (
    API,
    ENROLLMENT,
    Reads,
    Uses,
    errors,
)
from services.orchestrator.service_layer.handlers import NotFound, Refused

router = APIRouter()

LeadId = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS,
                             description="the lead id (the `subject` of its events)")]
"""A lead id as an event's `subject` may be one: a lead the API creates can be sent to."""


class EnrollRequest(BaseModel):
    program: str = Field(min_length=1, description="program id")


@router.get("/v1/leads", dependencies=API, responses=errors(400, 401),
            summary="Leads by their score now, best first (what sales works down)")
async def rank_leads(
        views: Reads, handlers: Uses,
        model: Annotated[str | None, Query(
            min_length=1, description="scoring model; default: the stage model")] = None,
        stage: Annotated[str | None, Query(min_length=1, description="only this stage")] = None,
        owner: Annotated[str | None, Query(min_length=1,
                                           description="only leads of this owner")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="leads per page")] = 50,
        cursor: Annotated[str | None, Query(
            description="`next_cursor` of the previous page (the listing keeps its time)")
        ] = None,
        at: Annotated[AwareDatetime | None, Query(
            description="rank as of this time (RFC 3339), now or later; default: now by the "
                        "orchestrator's clock")] = None) -> dict[str, Any]:
    """Each lead with its stage, owner, last activity and score as of the listing's time
    (decayed: a lead that went quiet has moved down), breakdown included; `next_cursor` pages
    on. Answered from an index (`lead_scores`), not a sort of all leads."""
    try:
        return await handlers.ranking(views, model=model, limit=limit, cursor=cursor,
                                      at=None if at is None else at.timestamp(), stage=stage,
                                      owner=owner)
    except BadCursor as exc:
        raise HTTPException(400, f"cursor: {exc}") from None
    except PastTime as exc:
        raise HTTPException(400, f"at: {exc}") from None


@router.get("/v1/leads/{lead_id}", dependencies=API, responses=errors(401, 404),
            summary="A lead: profile, scores, stage, enrollments, messages")
async def get_lead(
        lead_id: str, views: Reads, handlers: Uses,
        at: Annotated[AwareDatetime | None, Query(
            description="the time the scores are read as of (RFC 3339 with an offset); "
                        "default: now by the orchestrator's clock")] = None) -> dict[str, Any]:
    """Scores are as of now (or `at`): engagement decays between events, so a lead that went
    quiet reads lower than at its last event; `as_of` says when, `next_crossing` when decay
    alone takes it across a threshold next."""
    view = await handlers.lead(views, lead_id, None if at is None else at.timestamp())
    if view is None:
        raise HTTPException(404, f"no lead '{lead_id}'")
    return view


@router.post("/v1/leads/{lead_id}/enrollments", status_code=201, dependencies=ENROLLMENT,
             responses=errors(400, 401, 404, 409),
             summary="Enroll a lead in a program (what a sales rep does)")
async def enroll(lead_id: LeadId, body: EnrollRequest, handlers: Uses) -> dict[str, Any]:
    try:
        enr = await handlers.enroll(lead_id, body.program)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except Refused as exc:
        raise HTTPException(409, str(exc)) from None
    return {"lead_id": lead_id, "program": body.program, "status": enr.status,
            "step": enr.step_id, "program_version": enr.program_version}


@router.delete("/v1/leads/{lead_id}/enrollments/{program}", dependencies=ENROLLMENT,
               responses=errors(401, 404), summary="End an enrollment")
async def unenroll(lead_id: str, program: str, handlers: Uses) -> dict[str, Any]:
    try:
        await handlers.unenroll(lead_id, program)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return {"lead_id": lead_id, "program": program, "status": "exited"}


@router.delete("/v1/leads/{lead_id}", status_code=202, dependencies=API,
               responses=errors(401),
               summary="Erase a person: their PII here, in scoring and in dispatch")
async def erase_lead(lead_id: str, handlers: Uses) -> dict[str, Any]:
    """Deletes the lead's profile and pending messages, keeps anonymous counts, and
    publishes `lead.erased` so scoring and dispatch erase too (docs/security.md).
    Idempotent; 202 whether or not the lead was known."""
    found = await handlers.erase(lead_id)
    return {"lead_id": lead_id, "erased": True, "found": found}
