"""What to do with a command at send time, and the channel messages built from it (pure).

`triage` runs right before every attempt: a message past its `expires_at` is expired, a lead
suppressed for the channel (or for all channels) is suppressed, and a lead without an address
for the channel is suppressed with `no_address`; otherwise it is sent. `template_variables` is
what templates see: the lead's context with blank values dropped (so `default(...)` applies and
a template never says "Hi ,"), plus the message's ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from schemas.records import SendMessage
from schemas.vocabulary import ALL_CHANNELS
from services.dispatch.domain.sms_text import fit


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not send: `status` is the delivery's final status, `reason` the event's reason."""

    status: Literal["expired", "suppressed"]
    reason: str


def triage(cmd: SendMessage, *, now: datetime, suppressions: dict[str, str]) -> Skip | None:
    """Skip when expired, suppressed (`suppressions`: channel or `*` -> reason, for this lead)
    or without an address for the channel; None means send."""
    if cmd.expires_at is not None and cmd.expires_at <= now:
        return Skip("expired", "expired")
    reason = suppressions.get(cmd.channel) or suppressions.get(ALL_CHANNELS)
    if reason:
        return Skip("suppressed", reason)
    if cmd.channel == "email" and not _text(cmd.context.get("email")):
        return Skip("suppressed", "no_address")
    if cmd.channel == "sms" and not _text(cmd.context.get("phone")):
        return Skip("suppressed", "no_address")
    return None


def template_variables(cmd: SendMessage, **extra: Any) -> dict[str, Any]:
    """The variables a template renders with: the context's non-blank values at the top level
    (`first_name`, `company`, `scores`, ...), `context` (the same mapping), the message's ids,
    the task `subject` / `due_at`, and `extra` (links such as `unsubscribe_url`)."""
    context = {k: v for k, v in cmd.context.items() if not _blank(v)}
    ids = {"lead_id": cmd.lead_id, "message_id": cmd.message_id, "program_id": cmd.program_id,
           "step_id": cmd.step_id, "template": cmd.template}
    task = {k: v for k, v in (("subject", cmd.subject), ("due_at", cmd.due_at)) if v is not None}
    return {**context, "context": context, **ids, **task, **extra}


@dataclass(frozen=True, slots=True)
class Sms:
    """One text message."""

    message_id: str
    to: str
    body: str


@dataclass(frozen=True, slots=True)
class Task:
    """A CRM task for the lead's owner, as posted to the CRM (`payload`)."""

    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Webhook:
    """A signed webhook call (Standard Webhooks): `payload` is `{type, timestamp, data}`."""

    message_id: str
    payload: dict[str, Any]


def build_sms(cmd: SendMessage, body: str, *, max_segments: int = 2) -> Sms:
    """The text message, its body fitted into `max_segments` segments."""
    return Sms(cmd.message_id, str(cmd.context["phone"]).strip(), fit(body, max_segments))


def build_task(cmd: SendMessage, *, body: str | None, now: datetime,
               default_owner: str | None = None) -> Task:
    """The task: who (the lead's owner, else `default_owner`: a person or a queue), when (due),
    what (subject, body) and why now (program and step, stage and journey stage, the scores
    with their breakdown, the lead's interests)."""
    ctx = cmd.context
    lead = {k: ctx[k] for k in ("first_name", "last_name", "email", "phone", "title", "company",
                                "industry", "country", "timezone", "seniority") if k in ctx}
    payload = {
        "external_id": cmd.message_id,
        "lead_id": cmd.lead_id,
        "owner_id": ctx.get("owner_id") or default_owner,
        "subject": cmd.subject or f"Follow up ({cmd.program_id} / {cmd.step_id})",
        "due_at": (cmd.due_at or now).isoformat(),
        "body": body,
        "lead": lead,
        "why_now": {"program_id": cmd.program_id, "step_id": cmd.step_id,
                    "stage": ctx.get("stage"), "journey_stage": ctx.get("journey_stage"),
                    "interests": ctx.get("interests") or [], "scores": ctx.get("scores") or {}},
    }
    return Task(cmd.message_id, payload)


def build_webhook(cmd: SendMessage, *, text: str | None, now: datetime) -> Webhook:
    """The webhook body: the message with the lead's context and the rendered text, if any."""
    data = {"message_id": cmd.message_id, "lead_id": cmd.lead_id, "program_id": cmd.program_id,
            "program_version": cmd.program_version, "step_id": cmd.step_id,
            "template": cmd.template, "text": text, "context": cmd.context}
    return Webhook(cmd.message_id, {"type": "nurture.message", "timestamp": now.isoformat(),
                                    "data": data})


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) \
        or (isinstance(value, list | dict) and not value)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
