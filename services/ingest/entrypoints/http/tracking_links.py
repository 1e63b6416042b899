"""The public endpoints that close the loop: the open pixel, click redirects and one-click
unsubscribe (RFC 8058), for links dispatch signed with `services.common.tracking`
(`domain/engagement.py` says which event each becomes).

A click only ever redirects to the URL signed into its token (no open redirect); a bad or expired
link gets a plain page, never a redirect. Unsubscribe links live longer than the others
(dispatch's `NURTURE_DISPATCH_UNSUBSCRIBE_TTL_DAYS`, a year by default and never under 30 days);
an expired one says so and points to a newer message. Included only with tracking keys."""

from __future__ import annotations

import base64
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from services.common.tracking import TokenError, TokenExpired, TrackingClaims
from services.ingest.adapters.publisher import PublishUnavailable
from services.ingest.entrypoints.http.dependencies import HandlersDep
from services.ingest.service_layer.handlers import Handlers

log = logging.getLogger(__name__)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAX_FORM_BYTES = 4096  # the one-click form is 26 bytes
NO_CACHE = {"Cache-Control": "no-store, max-age=0"}
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width"></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">{body}</body></html>"""

router = APIRouter(include_in_schema=False)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=title, body=body), status_code=status,
                        headers=NO_CACHE)


@router.get("/t/open/{token}")
async def opened(token: str, service: HandlersDep) -> Response:
    try:
        await service.record_open(service.verify_link(token, "open"))
    except TokenError as exc:
        log.info("open pixel with an unusable token", extra={"reason": str(exc)})
    except PublishUnavailable:
        log.warning("open not recorded: Kafka unavailable")
    # the pixel is served whatever happened: a mail client cannot do anything with an error
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get("/t/click/{token}")
async def clicked(token: str, service: HandlersDep) -> Response:
    try:
        claims = service.verify_link(token, "click")
    except TokenError:
        return page("Link not valid", "<h1>This link is not valid any more.</h1>", 404)
    if not claims.url:
        return page("Link not valid", "<h1>This link has no destination.</h1>", 404)
    try:
        await service.record_click(claims)
    except PublishUnavailable:  # the reader still gets where they were going
        log.warning("click not recorded: Kafka unavailable")
    return RedirectResponse(claims.url, status_code=302, headers=NO_CACHE)


def unsubscribe_claims(service: Handlers, token: str) -> TrackingClaims | Response:
    """The claims of a valid unsubscribe token, else the page that says why not."""
    try:
        return service.verify_link(token, "unsubscribe")
    except TokenExpired:
        return page("Link expired", "<h1>This unsubscribe link has expired.</h1>"
                    "<p>Please use the unsubscribe link of a more recent email.</p>", 410)
    except TokenError:
        return page("Link not valid", "<h1>This link is not valid.</h1>", 404)


@router.get("/t/unsubscribe/{token}")
async def unsubscribe_page(token: str, service: HandlersDep) -> Response:
    if isinstance(refused := unsubscribe_claims(service, token), Response):
        return refused
    return page("Unsubscribe", f"""<h1>Unsubscribe</h1>
<p>Stop receiving these emails?</p>
<form method="post" action="/t/unsubscribe/{token}">
<input type="hidden" name="confirm" value="yes">
<button type="submit">Unsubscribe</button></form>""")


@router.post("/t/unsubscribe/{token}")
async def unsubscribe(token: str, request: Request, service: HandlersDep) -> Response:
    claims = unsubscribe_claims(service, token)
    if isinstance(claims, Response):
        return claims
    form = bytearray()
    async for chunk in request.stream():  # a public endpoint: never buffer a big body
        form += chunk
        if len(form) > MAX_FORM_BYTES:
            return page("Too large", "<h1>That request is too large.</h1>", 413)
    try:
        await service.record_unsubscribe(claims, bytes(form))
    except PublishUnavailable:
        return page("Try again", "<h1>Sorry, that did not work.</h1>"
                    "<p>Please try again in a minute.</p>", 503)
    return page("Unsubscribed", "<h1>You are unsubscribed.</h1>"
                "<p>You will not receive these emails any more.</p>")
