"""`/metrics`: the service's Prometheus registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.common.http.server import metrics_response
from services.dispatch.entrypoints.http.dependencies import ServiceDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(service: ServiceDep) -> Response:
    return metrics_response(service.registry)
