"""`POST /v1/events`: CloudEvents, one or a batch, all-or-nothing."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.entrypoints.http.dependencies import AdmittedKey, Body, HandlersDep
from services.ingest.entrypoints.http.openapi import EVENTS_BODY, RESPONSES

router = APIRouter()


@router.post("/v1/events", status_code=202, openapi_extra=EVENTS_BODY, responses=RESPONSES,
             summary="Send one CloudEvent or a batch")
async def post_events(request: Request, key: AdmittedKey, body: Body,
                      service: HandlersDep) -> Response:
    """One event (`application/cloudevents+json` or `application/json`) or a batch
    (`application/cloudevents-batch+json`, or a JSON array), or one event in the HTTP binding's
    binary mode (`ce-*` headers, the data as the body). All-or-nothing."""
    accepted = await service.accept_events(body, request.headers, key)
    return JSONResponse({"accepted": accepted.count}, status_code=202)
