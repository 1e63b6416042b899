"""Tracking links of one message (pure given the key and `now`): the open pixel, click-tracked
links and the unsubscribe link, all pointing at ingest's public endpoints with signed tokens
(`services.common.tracking`).

Click tracking rewrites the `href` of every `<a>` whose value is a double-quoted absolute
http(s) URL (what our templates write); `mailto:`, anchors and links already on the tracking
host are left alone. The text part keeps its links as written, so it stays readable."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.records import SendMessage
from services.common.tracking import Kind, TrackingClaims, tracking_url

_HREF = re.compile(r'(<a\b[^>]*?\bhref\s*=\s*")(https?://[^"]+)(")', re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Tracker:
    """Signs the links of one message. `base_url` is ingest's public URL; tokens expire `ttl`
    after `now`, the unsubscribe link `unsubscribe_ttl` after it (when given: longer, since a
    person may want out of a message long after it came)."""

    cmd: SendMessage
    base_url: str
    key: bytes
    now: datetime
    ttl: timedelta
    unsubscribe_ttl: timedelta | None = None

    def url(self, kind: Kind, target: str | None = None) -> str:
        """The tracking URL of `kind` (`target` is the destination of a click)."""
        ttl = self.unsubscribe_ttl if kind == "unsubscribe" and self.unsubscribe_ttl else self.ttl
        claims = TrackingClaims(
            message_id=self.cmd.message_id, lead_id=self.cmd.lead_id,
            program_id=self.cmd.program_id, step_id=self.cmd.step_id, kind=kind,
            exp=int((self.now + ttl).timestamp()), url=target)
        return tracking_url(self.base_url, claims, key=self.key)

    def track_clicks(self, body: str) -> str:
        """`body` (HTML) with every absolute http(s) link sent through the click endpoint."""
        own = self.base_url.rstrip("/") + "/"

        def swap(match: re.Match[str]) -> str:
            target = html.unescape(match[2])
            if target.startswith(own):
                return match[0]
            return f"{match[1]}{html.escape(self.url('click', target))}{match[3]}"

        return _HREF.sub(swap, body)

    def add_pixel(self, body: str) -> str:
        """`body` (HTML) with the open-tracking pixel before `</body>` (or at the end)."""
        tag = (f'<img src="{html.escape(self.url("open"))}" width="1" height="1" alt="" '
               'style="display:block;border:0;width:1px;height:1px">')
        found = list(_BODY_END.finditer(body))
        if not found:
            return body + tag
        at = found[-1].start()
        return body[:at] + tag + body[at:]
