"""What the HTTP channels (SMS, CRM, webhooks) share: one pooled httpx client, and the
translation of HTTP outcomes into domain errors. 408, 425, 429 and 5xx are transient (honoring
`Retry-After`, in seconds or as an HTTP date); other 4xx are permanent; network errors and
timeouts are transient."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.dispatch.adapters.handoff import Handoff, http_trace
from services.dispatch.domain.errors import ProviderRejected, ProviderUnavailable

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_RETRY_AFTER = 24 * 3600.0


async def post(client: httpx.AsyncClient, url: str, *, reason: str, handoff: Handoff,
               **kwargs: Any) -> httpx.Response:
    """POST, returning a 2xx response or raising ProviderUnavailable / ProviderRejected whose
    reason starts with `reason` (the channel, e.g. `sms`). `handoff` is awaited right before the
    request goes out (adapters/handoff.py)."""
    try:
        response = await client.post(url, extensions={"trace": http_trace(handoff)}, **kwargs)
    except httpx.TimeoutException:
        raise ProviderUnavailable("timeout", f"{reason}: no answer in time") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable("connection_failed", f"{reason}: {type(exc).__name__}") \
            from None
    check(response, reason=reason)
    return response


def provider_id(response: httpx.Response, field: str) -> str:
    """The id a provider returned in its JSON body under `field` ("" when there is none)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get(field) or "") if isinstance(body, dict) else ""


def check(response: httpx.Response, *, reason: str) -> None:
    """Raise the domain error for a non-2xx response."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"{reason}: HTTP {status}"
    if status in TRANSIENT_STATUSES or status >= 500:
        raise ProviderUnavailable(f"http_{status if status < 500 else '5xx'}", detail,
                                  retry_after=retry_after(response.headers))
    raise ProviderRejected("http_4xx", detail)


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date), capped at a day;
    None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
