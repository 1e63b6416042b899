"""`POST /v1/batch`: the Segment HTTP API's batch call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.entrypoints.http.dependencies import AdmittedKey, Body, HandlersDep
from services.ingest.entrypoints.http.errors import listed
from services.ingest.entrypoints.http.openapi import BATCH_BODY, RESPONSES

router = APIRouter()


@router.post("/v1/batch", status_code=200, openapi_extra=BATCH_BODY, responses=RESPONSES,
             summary="Segment-compatible batch (identify, track, page, screen, group)")
async def post_batch(request: Request, key: AdmittedKey, body: Body,
                     service: HandlersDep) -> Response:
    """The Segment HTTP API's batch call, so Segment and RudderStack SDKs work unchanged.
    Answers 200 (what those SDKs expect) once Kafka has every event."""
    accepted = await service.accept_segment_batch(body, request.headers.get("content-type"), key)
    reply: dict[str, Any] = {"success": True, "accepted": accepted.count}
    if accepted.rejected:
        reply["rejected"] = listed(accepted.rejected)
    return JSONResponse(reply)
