"""/v1/admin: the controllable clock (behind a token of its own; off when unset). Local and demo
runs move it to play weeks of a program in minutes; ingest and dispatch follow it when
`NURTURE_CLOCK_URL` points at `GET /v1/admin/clock`."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.orchestrator.entrypoints.http.dependencies import ADMIN, Uses, errors

router = APIRouter()


class ClockAdvance(BaseModel):
    seconds: float = Field(gt=0, le=10 * 365 * 86400, description="how far to move it")
    wait_seconds: float = Field(
        default=30.0, ge=0, le=600, description="how long to spend deciding the timers due by "
        "the new time before answering (0: answer at once; they are decided in the background)")


@router.get("/v1/admin/clock", dependencies=ADMIN, responses=errors(401, 404),
            summary="The shared clock: offset from the wall clock and the time it says")
async def clock(handlers: Uses) -> dict[str, float]:
    return await handlers.clock()


@router.post("/v1/admin/clock/advance", dependencies=ADMIN, responses=errors(400, 401, 404),
             summary="Move the shared clock forward (tests, demos)")
async def advance(body: ClockAdvance, handlers: Uses) -> dict[str, float]:
    """Answers once every timer due by the new time has been decided (`timers_fired`), or when
    `wait_seconds` ran out (`timers_due` says how many were left to the background loop)."""
    return await handlers.advance_clock(body.seconds, settle_seconds=body.wait_seconds)


@router.post("/v1/admin/clock/reset", dependencies=ADMIN, responses=errors(401, 404),
             summary="Put the shared clock back on the wall clock (local and demo runs)")
async def reset(handlers: Uses) -> dict[str, float]:
    """What was scheduled for a later time stays scheduled for it."""
    return await handlers.reset_clock()
