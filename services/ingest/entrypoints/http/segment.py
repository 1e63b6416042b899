"""`POST /v1/batch`: the Segment HTTP API's batch call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.domain.intake import MAX_PROBLEMS
from services.ingest.entrypoints.http.dependencies import AdmittedKey, Body, HandlersDep
from services.ingest.entrypoints.http.errors import listed
from services.ingest.entrypoints.http.openapi import BATCH_BODY, RESPONSES
from services.ingest.service_layer.handlers import Accepted

router = APIRouter()


@router.post("/v1/batch", status_code=200, openapi_extra=BATCH_BODY, responses=RESPONSES,
             summary="Segment-compatible batch (identify, track, page, screen, group)")
async def post_batch(request: Request, key: AdmittedKey, body: Body,
                     service: HandlersDep) -> Response:
    """The Segment HTTP API's batch call, so Segment and RudderStack SDKs work unchanged.
    Answers 200 (what those SDKs expect) once Kafka has every event."""
    accepted = await service.accept_segment_batch(body, request.headers.get("content-type"), key)
    return segment_reply(accepted)


def segment_reply(accepted: Accepted) -> JSONResponse:
    """The 200 of a Segment call or batch: what was accepted, and the calls that were not
    (every one dead-lettered; the answer names the first ones)."""
    reply: dict[str, Any] = {"success": True, "accepted": accepted.count}
    if accepted.rejected:
        reply["rejected"] = listed(accepted.rejected[:MAX_PROBLEMS])
        reply["rejected_calls"] = len({p.index for p in accepted.rejected})
    return JSONResponse(reply)
