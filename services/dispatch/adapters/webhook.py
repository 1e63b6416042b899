"""Webhooks signed the Standard Webhooks way (`services/common/webhooks.py`: the headers, the
signature and the secret's forms); `webhook-id` is the message id, stable across retries, so
receivers dedupe on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import httpx
import orjson

from services.common.webhooks import secret_key, signed_headers
from services.dispatch.adapters.handoff import Handoff, no_handoff
from services.dispatch.adapters.http import post
from services.dispatch.domain.errors import ProviderError
from services.dispatch.domain.messages import Webhook


class WebhookSender(Protocol):
    """Delivers webhooks."""

    async def send(self, hook: Webhook, *, now: datetime, handoff: Handoff = no_handoff) -> str:
        """POST `hook`, signed as of `now`, awaiting `handoff` right before the request goes
        out; "" (receivers give no id). Raises ProviderError."""
        ...


class HttpWebhookSender:
    """The real WebhookSender."""

    def __init__(self, client: httpx.AsyncClient, *, url: str, secret: str) -> None:
        self.client, self.url, self.key = client, url, secret_key(secret)

    async def send(self, hook: Webhook, *, now: datetime, handoff: Handoff = no_handoff) -> str:
        body = orjson.dumps(hook.payload)
        await post(self.client, self.url, reason="webhook", handoff=handoff, content=body,
                   headers=signed_headers(self.key, msg_id=hook.message_id, now=now, body=body))
        return ""


@dataclass
class FakeWebhooks:
    """A WebhookSender that keeps what it is given and raises queued `failures` first."""

    sent: list[Webhook] = field(default_factory=list)
    failures: list[ProviderError] = field(default_factory=list)

    async def send(self, hook: Webhook, *, now: datetime, handoff: Handoff = no_handoff) -> str:
        await handoff()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(hook)
        return ""
