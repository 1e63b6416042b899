"""/v1/admin: the controllable clock (behind a token of its own; off when unset)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.orchestrator.entrypoints.http.dependencies import ADMIN, Uses, errors

router = APIRouter()


class ClockAdvance(BaseModel):
    seconds: float = Field(gt=0, le=10 * 365 * 86400)


@router.post("/v1/admin/clock/advance", dependencies=ADMIN, responses=errors(400, 401, 404),
             summary="Move the shared clock forward (tests, demos)")
async def advance(body: ClockAdvance, handlers: Uses) -> dict[str, float]:
    offset, now = await handlers.advance_clock(body.seconds)
    return {"offset_seconds": offset, "now": now}
