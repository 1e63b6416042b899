"""Email engagement events from verified tracking links (pure: the clock reading comes in).

The links (open pixel, click redirect, one-click unsubscribe, RFC 8058) are signed by dispatch with
`services.common.tracking`; a verified token becomes `email.opened`, `email.clicked` or
`email.unsubscribed`. The event id is derived from the message (and URL), so a reloaded pixel or
a double click is one event downstream."""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.cloudevent import new_event
from schemas.vocabulary import rfc3339
from services.common.tracking import TrackingClaims

SOURCE = "nurture-ingest/tracking"
ONE_CLICK_FORM = b"List-Unsubscribe=One-Click"


def event_for(claims: TrackingClaims, etype: str, extra: dict[str, Any], *, salt: str,
              now: float) -> dict[str, Any]:
    data = {"message_id": claims.message_id, "program_id": claims.program_id,
            "step_id": claims.step_id, **extra}
    digest = hashlib.sha256(f"{claims.message_id}|{etype}|{salt}".encode()).hexdigest()[:32]
    return new_event(id=digest, source=SOURCE, type=etype, subject=claims.lead_id,
                     time=rfc3339(now), data=data, datacontenttype=None)


def opened(claims: TrackingClaims, *, now: float) -> dict[str, Any]:
    return event_for(claims, "email.opened", {}, salt="", now=now)


def clicked(claims: TrackingClaims, *, now: float) -> dict[str, Any]:
    """A click on the URL signed into the token (a token without one never gets here)."""
    return event_for(claims, "email.clicked", {"url": claims.url}, salt=claims.url or "", now=now)


def unsubscribed(claims: TrackingClaims, form: bytes, *, now: float) -> dict[str, Any]:
    """The unsubscribe of a form post: a mail client's one-click post (RFC 8058) or the page's."""
    method = "one_click" if ONE_CLICK_FORM in form else "link"
    return event_for(claims, "email.unsubscribed", {"method": method}, salt="", now=now)
