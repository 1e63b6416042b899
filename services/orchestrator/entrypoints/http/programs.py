"""/v1/programs and /v1/funnel: how programs and the funnel perform."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.orchestrator.entrypoints.http.dependencies import API, Reads, Uses, errors

router = APIRouter()


@router.get("/v1/programs", dependencies=API, responses=errors(401),
            summary="Programs with per-step counts")
async def programs(handlers: Uses, views: Reads) -> list[dict[str, Any]]:
    return await handlers.programs(views)


@router.get("/v1/funnel", dependencies=API, responses=errors(401),
            summary="Leads per stage, conversion, time in stage, sales cycle")
async def funnel(views: Reads) -> dict[str, Any]:
    return await views.funnel()
