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
from dataclasses import dataclass
from typing import Any

from services.dispatch.domain.errors import HandoffRefused
from services.dispatch.service_layer.unit_of_work import Start, Statuses

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


@dataclass(slots=True)
class Handover:
    """One attempt's hand-off (a `Handoff` for the provider): the first time it is awaited it
    marks the delivery `sending` (committed) and keeps the attempt number; raises
    HandoffRefused when the delivery is no longer pending under this attempt's claim, so
    nothing is sent."""

    statuses: Statuses
    claim: Start
    attempt: int | None = None

    async def __call__(self) -> None:
        if self.attempt is not None:  # a provider may reach its hand-off point only once
            return
        self.attempt = await self.statuses.start(self.claim)
        if self.attempt is None:
            raise HandoffRefused(self.claim.message_id)
