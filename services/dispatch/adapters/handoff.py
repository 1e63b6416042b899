"""The hand-off point of a provider call: the moment after which the provider may have taken
the message. Before it, an interrupted attempt certainly sent nothing and is simply tried again;
after it, only the provider knows (the channel's guarantee setting decides what happens then).

Each provider awaits the `Handoff` it is given right before that point, and sends nothing if it
raises. Where the point is, per protocol:
- SMTP: after the envelope (MAIL FROM, RCPT TO) was accepted and DATA answered with 354, before
  the message and its end-of-data dot are written. The server delivers nothing without the dot.
- HTTP (SMS, CRM tasks, webhooks): after the connection is open, before the request headers go
  out (httpcore's `send_request_headers` trace event; a proxy's CONNECT, which carries the same
  trace, is not the request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Handoff = Callable[[], Awaitable[None]]


async def no_handoff() -> None:
    """For a provider call that records nothing at its hand-off point (tools, tests)."""


def http_trace(handoff: Handoff) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpx `trace` extension that awaits `handoff` before the request headers are sent."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith(".send_request_headers.started") \
                and getattr(info.get("request"), "method", None) != b"CONNECT":
            await handoff()

    return trace
