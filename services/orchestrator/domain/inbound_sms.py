"""Inbound SMS (a Twilio-compatible webhook): what STOP / START / HELP and other replies mean
(pure). The provider's signature and answer format are in `adapters/twilio.py`.

It lives on the orchestrator because only the orchestrator can turn a phone number into lead ids
(the numbers are in the lead profiles). Each inbound message becomes an event on
`nurture.events.v1`, written to the outbox in the same transaction as nothing else, so it is
published like every other record: `sms.opted_out` for STOP and its synonyms, a consent update
(`crm.lead_upserted` with `consent.sms: granted`) for START, `sms.replied` (keyword only, never
the text) for anything else. The events come back scored, the orchestrator suppresses SMS for the
lead, and dispatch, which follows the same events, stops sending at once."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from schemas.cloudevent import new_event

STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START = frozenset({"START", "UNSTOP", "YES"})
HELP = frozenset({"HELP", "INFO"})
SOURCE = "nurture-orchestrator/sms-inbound"
HELP_REPLY = "Reply STOP to stop these messages, START to receive them again."


def keyword(body: str) -> str:
    words = body.strip().upper().split()
    return words[0][:20] if words else ""


def reply(form: Mapping[str, str]) -> str | None:
    """What to answer the sender (HELP), or None."""
    return HELP_REPLY if keyword(form.get("Body", "")) in HELP else None


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
    return [new_event(id=hashlib.sha256(f"{sid}|{lead}|{etype}".encode()).hexdigest()[:32],
                      source=SOURCE, type=etype, subject=lead, time=now, data=data)
            for lead in lead_ids]
