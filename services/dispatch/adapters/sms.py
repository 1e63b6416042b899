"""SMS through a Twilio-compatible REST API: POST form-encoded `To`, `From`, `Body` to
`{base}/2010-04-01/Accounts/{sid}/Messages.json` with HTTP basic auth (account sid + token).

The request carries `Idempotency-Key: <message id>` for providers that dedupe on it. Consent is
the orchestrator's job (the command carries none); dispatch checks its suppression list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import httpx

from services.dispatch.adapters.handoff import Handoff, no_handoff
from services.dispatch.adapters.http import post, provider_id
from services.dispatch.domain.errors import ProviderError
from services.dispatch.domain.messages import Sms


class SmsGateway(Protocol):
    """Sends text messages."""

    async def send(self, sms: Sms, *, handoff: Handoff = no_handoff) -> str:
        """Send `sms`, awaiting `handoff` right before the request goes out; the provider's id
        of it. Raises ProviderError."""
        ...


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    base_url: str
    account_sid: str
    auth_token: str
    from_number: str


class TwilioSms:
    """The real SmsGateway."""

    def __init__(self, client: httpx.AsyncClient, config: TwilioConfig) -> None:
        self.client, self.config = client, config

    async def send(self, sms: Sms, *, handoff: Handoff = no_handoff) -> str:
        cfg = self.config
        url = f"{cfg.base_url.rstrip('/')}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json"
        response = await post(self.client, url, reason="sms", handoff=handoff,
                              data={"To": sms.to, "From": cfg.from_number, "Body": sms.body},
                              auth=(cfg.account_sid, cfg.auth_token),
                              headers={"Idempotency-Key": sms.message_id})
        return provider_id(response, "sid")


@dataclass
class FakeSms:
    """An SmsGateway that keeps what it is sent and raises queued `failures` first."""

    sent: list[Sms] = field(default_factory=list)
    failures: list[ProviderError] = field(default_factory=list)

    async def send(self, sms: Sms, *, handoff: Handoff = no_handoff) -> str:
        await handoff()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(sms)
        return f"SM{len(self.sent):032d}"
