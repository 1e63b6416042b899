"""`/healthz` (liveness: the workers are running) and `/readyz` (PostgreSQL reachable, Kafka
connected)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from services.common.http.server import readiness
from services.dispatch.entrypoints.http.dependencies import ServiceDep

router = APIRouter()


@router.get("/healthz")
async def healthz(service: ServiceDep) -> Response:
    if service.workers_failed:
        return JSONResponse({"detail": "the delivery workers stopped; see the log"}, 503)
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(service: ServiceDep) -> Response:
    return await readiness(service.engine, kafka_ready=service.kafka_ready)
