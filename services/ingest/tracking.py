"""The public endpoints that close the loop: the open pixel, click redirects and one-click
unsubscribe (RFC 8058), for links dispatch signed with `services.common.tracking`.

Each turns a verified token into an event (`email.opened`, `email.clicked`, `email.unsubscribed`)
published like any other; the event id is derived from the message (and URL), so a reloaded pixel
or a double click is one event downstream. A click only ever redirects to the URL signed into its
token (no open redirect); a bad or expired link gets a plain page, never a redirect. Unsubscribe
links live longer than the others (dispatch's `NURTURE_DISPATCH_UNSUBSCRIBE_TTL_DAYS`, a year by
default and never under 30 days); an expired one says so and points to a newer message."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from schemas.vocabulary import rfc3339
from services.common.clock import Clock, SystemClock
from services.common.tracking import TokenError, TokenExpired, TrackingClaims, verify
from services.ingest.adapters.publisher import PublishUnavailable
from services.ingest.domain.intake import Record, to_record

log = logging.getLogger(__name__)
SOURCE = "nurture-ingest/tracking"
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
MAX_FORM_BYTES = 4096  # the one-click form is 26 bytes
NO_CACHE = {"Cache-Control": "no-store, max-age=0"}
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width"></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">{body}</body></html>"""

Publish = Callable[[list[Record]], Awaitable[None]]


def event_for(claims: TrackingClaims, etype: str, extra: dict[str, Any], *, salt: str,
              now: float) -> dict[str, Any]:
    data = {"message_id": claims.message_id, "program_id": claims.program_id,
            "step_id": claims.step_id, **extra}
    digest = hashlib.sha256(f"{claims.message_id}|{etype}|{salt}".encode()).hexdigest()[:32]
    return {"specversion": "1.0", "id": digest, "source": SOURCE, "type": etype,
            "subject": claims.lead_id, "time": rfc3339(now), "data": data}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=title, body=body), status_code=status,
                        headers=NO_CACHE)


def add_tracking_routes(app: FastAPI, *, keys: list[bytes], publish: Publish,
                        clock: Clock | None = None) -> None:
    """Register /t/open, /t/click and /t/unsubscribe on the ingest app. `clock` (the wall clock
    by default) stamps the events and checks link expiry, like the rest of ingest."""
    time_source: Clock = clock or SystemClock()

    async def record(claims: TrackingClaims, etype: str, extra: dict[str, Any],
                     salt: str = "") -> None:
        now = time_source.now().timestamp()
        event = event_for(claims, etype, extra, salt=salt, now=now)
        await publish([to_record(event, received_at=datetime.fromtimestamp(now, UTC))])

    @app.get("/t/open/{token}", include_in_schema=False)
    async def opened(token: str) -> Response:
        try:
            claims = verify(token, keys=keys, now=time_source.now().timestamp(), kind="open")
            await record(claims, "email.opened", {})
        except TokenError as exc:
            log.info("open pixel with an unusable token", extra={"reason": str(exc)})
        except PublishUnavailable:
            log.warning("open not recorded: Kafka unavailable")
        # the pixel is served whatever happened: a mail client cannot do anything with an error
        return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)

    @app.get("/t/click/{token}", include_in_schema=False)
    async def clicked(token: str) -> Response:
        try:
            claims = verify(token, keys=keys, now=time_source.now().timestamp(), kind="click")
        except TokenError:
            return page("Link not valid", "<h1>This link is not valid any more.</h1>", 404)
        if not claims.url:
            return page("Link not valid", "<h1>This link has no destination.</h1>", 404)
        try:
            await record(claims, "email.clicked", {"url": claims.url}, salt=claims.url)
        except PublishUnavailable:  # the reader still gets where they were going
            log.warning("click not recorded: Kafka unavailable")
        return RedirectResponse(claims.url, status_code=302, headers=NO_CACHE)

    def unsubscribe_claims(token: str) -> TrackingClaims | Response:
        """The claims of a valid unsubscribe token, else the page that says why not."""
        try:
            return verify(token, keys=keys, now=time_source.now().timestamp(), kind="unsubscribe")
        except TokenExpired:
            return page("Link expired", "<h1>This unsubscribe link has expired.</h1>"
                        "<p>Please use the unsubscribe link of a more recent email.</p>", 410)
        except TokenError:
            return page("Link not valid", "<h1>This link is not valid.</h1>", 404)

    @app.get("/t/unsubscribe/{token}", include_in_schema=False)
    async def unsubscribe_page(token: str) -> Response:
        if isinstance(refused := unsubscribe_claims(token), Response):
            return refused
        return page("Unsubscribe", f"""<h1>Unsubscribe</h1>
<p>Stop receiving these emails?</p>
<form method="post" action="/t/unsubscribe/{token}">
<input type="hidden" name="confirm" value="yes">
<button type="submit">Unsubscribe</button></form>""")

    @app.post("/t/unsubscribe/{token}", include_in_schema=False)
    async def unsubscribe(token: str, request: Request) -> Response:
        claims = unsubscribe_claims(token)
        if isinstance(claims, Response):
            return claims
        body = bytearray()
        async for chunk in request.stream():  # a public endpoint: never buffer a big body
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return page("Too large", "<h1>That request is too large.</h1>", 413)
        method = "one_click" if b"List-Unsubscribe=One-Click" in body else "link"
        try:
            await record(claims, "email.unsubscribed", {"method": method})
        except PublishUnavailable:
            return page("Try again", "<h1>Sorry, that did not work.</h1>"
                        "<p>Please try again in a minute.</p>", 503)
        return page("Unsubscribed", "<h1>You are unsubscribed.</h1>"
                    "<p>You will not receive these emails any more.</p>")
