"""The endpoints a web page's analytics.js talks to (`domain/browser.py`): one per call type
(`/v1/t`, `/v1/p`, `/v1/i`, `/v1/g`, `/v1/a`, `/v1/s`), the batch (`/v1/b`), and the settings
document it loads at start-up (`/v1/projects/{write_key}/settings`), so that a page needs no
third-party CDN. CORS preflights are answered by `cors.py`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import URL

from services.ingest.domain import browser
from services.ingest.domain.auth import AuthError, key_named_by
from services.ingest.entrypoints.http.dependencies import (
    Body,
    HandlersDep,
    admit_from_page,
    allow_page,
)
from services.ingest.entrypoints.http.openapi import RESPONSES
from services.ingest.entrypoints.http.segment import segment_reply

router = APIRouter()


async def post_call(request: Request, body: Body, service: HandlersDep) -> Response:
    """One analytics.js call (or its batch): mapped, limited and dead-lettered like a call of
    `POST /v1/batch`; 200 once Kafka has the events."""
    kind = request.url.path.rsplit("/", 1)[-1]
    key, doc = service.browser_call(kind, body, request.headers.get("content-type"),
                                    request.headers.get("authorization"),
                                    request.app.state.api_keys.current)
    admit_from_page(request, key, service)
    client = request.client.host if request.client else None
    return segment_reply(await service.accept_segment_doc(doc, key, client))


for _kind, _call in [*browser.CALLS.items(), (browser.BATCH, "batch")]:
    router.add_api_route(
        f"/v1/{_kind}", post_call, methods=["POST"], responses=RESPONSES,
        summary=f"analytics.js {_call} (text/plain JSON, write key in the body or Basic)")


@router.get("/v1/projects/{write_key}/settings", summary="analytics.js settings document",
            responses={403: RESPONSES[403], 404: {"description": "No browser key of that name"}})
async def settings_document(write_key: str, request: Request) -> Response:
    """What analytics.js loads at start-up (its `cdnURL` set to this ingest): every call goes
    to this ingest. 404 unless the key is a configured browser key (one with origins); 403 for a
    page the key does not allow."""
    vary = {"Vary": "Origin"}  # the answer differs by origin: caches must know
    try:
        key = key_named_by(request.app.state.api_keys.current, write_key)
    except AuthError:
        key = None
    if key is None or not key.browser:
        return JSONResponse({"detail": "no browser key of that name"}, status_code=404,
                            headers=vary)
    allow_page(request, key)
    public = request.app.state.handlers.settings.public_url
    url = URL(str(public)) if public is not None else request.base_url
    api_host = f"{url.netloc}{url.path.rstrip('/')}/v1"
    return JSONResponse(browser.settings_document(write_key, api_host=api_host,
                                                  protocol=url.scheme), headers=vary)
