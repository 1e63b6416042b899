"""The endpoints a web page's analytics.js talks to (`domain/browser.py`): one per call type
(`/v1/t`, `/v1/p`, `/v1/i`, `/v1/g`, `/v1/a`, `/v1/s`), the batch (`/v1/b`), and the settings
document it loads at start-up (`/v1/projects/{write_key}/settings`), so that a page needs no
third-party CDN. CORS preflights are answered by `cors.py`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import URL

from services.ingest.domain import browser
from services.ingest.domain.auth import AuthError, check_origin, key_named_by
from services.ingest.domain.browser import same_origin
from services.ingest.entrypoints.http.dependencies import Body, HandlersDep, admit_from_page
from services.ingest.entrypoints.http.errors import listed
from services.ingest.entrypoints.http.openapi import RESPONSES

router = APIRouter()


async def post_call(request: Request, body: Body, service: HandlersDep) -> Response:
    """One analytics.js call (or its batch): mapped, limited and dead-lettered like a call of
    `POST /v1/batch`; 200 once Kafka has the events."""
    kind = request.url.path.rsplit("/", 1)[-1]
    key, doc = service.browser_call(kind, body, request.headers.get("content-type"),
                                    request.headers.get("authorization"),
                                    request.app.state.api_keys.current)
    admit_from_page(request, key, service)
    accepted = await service.accept_segment_doc(doc, key)
    reply: dict[str, Any] = {"success": True, "accepted": accepted.count}
    if accepted.rejected:
        reply["rejected"] = listed(accepted.rejected)
    return JSONResponse(reply)


for _kind, _call in [*browser.CALLS.items(), (browser.BATCH, "batch")]:
    router.add_api_route(
        f"/v1/{_kind}", post_call, methods=["POST"], responses=RESPONSES,
        summary=f"analytics.js {_call} (text/plain JSON, write key in the body or Basic)")


@router.get("/v1/projects/{write_key}/settings", summary="analytics.js settings document")
async def settings_document(write_key: str, request: Request) -> Response:
    """What analytics.js loads at start-up (its `cdnURL` set to this ingest): every call goes
    to this ingest. 404 for a key that is not configured."""
    try:
        key = key_named_by(request.app.state.api_keys.current, write_key)
    except AuthError:
        return JSONResponse({"detail": "unknown write key"}, status_code=404)
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, request.headers.get("host")):
        check_origin(key, origin)
        request.state.cors_origin = origin
    public = request.app.state.handlers.settings.public_url
    url = URL(str(public)) if public is not None else request.base_url
    api_host = f"{url.netloc}{url.path.rstrip('/')}/v1"
    return JSONResponse(browser.settings_document(write_key, api_host=api_host,
                                                  protocol=url.scheme))
