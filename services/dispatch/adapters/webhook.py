"""Webhooks signed the Standard Webhooks way (standardwebhooks.com): headers `webhook-id` (the
message id, stable across retries, so receivers dedupe on it), `webhook-timestamp` (Unix
seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

The secret may be given as `whsec_<base64>` (the standard's form: the key is the decoded
bytes) or as plain text (its UTF-8 bytes)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import httpx
import orjson

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


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("webhook secret starts with whsec_ but is not base64") from None
    return secret.encode()


def signature(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (one `v1,` signature)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, *, msg_id: str, now: datetime, body: bytes) -> dict[str, str]:
    timestamp = int(now.timestamp())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, msg_id=msg_id, timestamp=timestamp, body=body),
            "Content-Type": "application/json"}


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
