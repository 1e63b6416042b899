"""Inbound SMS (a Twilio-compatible webhook): STOP / START / HELP and replies.

It lives on the orchestrator because only the orchestrator can turn a phone number into lead ids
(the numbers are in the lead profiles). Each inbound message becomes an event on
`nurture.events.v1`, written to the outbox in the same transaction as nothing else, so it is
published like every other record: `sms.opted_out` for STOP and its synonyms, a consent update
(`crm.lead_upserted` with `consent.sms: granted`) for START, `sms.replied` (keyword only, never
the text) for anything else. The events come back scored, the orchestrator suppresses SMS for the
lead, and dispatch, which follows the same events, stops sending at once.

Requests are authenticated with the provider's signature: `X-Twilio-Signature`, base64 of
HMAC-SHA1 over the public URL followed by every form field name and value, sorted by name."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.vocabulary import rfc3339
from services.common.db.outbox import Outgoing
from services.common.kafka.topics import Topics

STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START = frozenset({"START", "UNSTOP", "YES"})
HELP = frozenset({"HELP", "INFO"})
SOURCE = "nurture-orchestrator/sms-inbound"
HELP_REPLY = "Reply STOP to stop these messages, START to receive them again."


def signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    payload = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verified(auth_token: str, url: str, form: Mapping[str, str], given: str | None) -> bool:
    return given is not None and hmac.compare_digest(signature(auth_token, url, form), given)


def keyword(body: str) -> str:
    words = body.strip().upper().split()
    return words[0][:20] if words else ""


def events_for(form: Mapping[str, str], lead_ids: list[str], now: float) -> list[dict[str, Any]]:
    """The events one inbound message means for each lead with that number (pure)."""
    word = keyword(form.get("Body", ""))
    data: dict[str, Any]
    if word in STOP:
        etype, data = "sms.opted_out", {"keyword": word}
    elif word in START:
        etype, data = "crm.lead_upserted", {"consent": {"sms": "granted"}}
    elif word in HELP:
        return []
    else:
        etype, data = "sms.replied", {"keyword": word} if word else {}
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    return [{"specversion": "1.0", "source": SOURCE, "type": etype, "subject": lead,
             "id": hashlib.sha256(f"{sid}|{lead}|{etype}".encode()).hexdigest()[:32],
             "time": rfc3339(now), "data": data} for lead in lead_ids]


async def leads_with_phone(conn: AsyncConnection, phone: str) -> list[str]:
    rows = await conn.execute(text(
        "SELECT lead_id FROM leads WHERE state->'profile'->>'phone' = :phone ORDER BY lead_id"),
        {"phone": phone})
    return [r.lead_id for r in rows]


def twiml(message: str | None = None) -> str:
    inner = f"<Message>{message}</Message>" if message else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'


def outgoing(events: list[dict[str, Any]], topics: Topics) -> list[Outgoing]:
    return [Outgoing(topics.events, e["subject"].encode(), orjson.dumps(e),
                     [("content-type", "application/cloudevents+json; charset=utf-8")])
            for e in events]

