"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.common.http.server import metrics_response
from services.ingest.entrypoints.http.dependencies import HandlersDep
from services.ingest.entrypoints.http.errors import problem

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process is serving")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: connected to Kafka and the broker answers")
async def readyz(service: HandlersDep) -> Response:
    if await service.ready():
        return JSONResponse({"status": "ready"})
    return problem(503, "not connected to Kafka")


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    return metrics_response(request.app.state.registry)
