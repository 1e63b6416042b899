"""Liveness, readiness and the Prometheus scrape (public)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.common.http.server import metrics_response, readiness
from services.orchestrator.entrypoints.http.dependencies import Orch, errors

router = APIRouter()


@router.get("/healthz", responses=errors(503))
async def healthz(request: Request) -> Response:
    workers = getattr(request.app.state, "workers", None)
    if workers is not None and workers.done():
        return JSONResponse({"detail": "the background workers stopped; see the log"}, 503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses=errors(503))
async def readyz(orch: Orch) -> Response:
    return await readiness(orch.engine, kafka_ready=orch.kafka_ready)


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(orch: Orch) -> Response:
    return metrics_response(orch.registry)
