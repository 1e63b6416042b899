"""Outcome events (pure): every delivery outcome goes back to `nurture.events.v1` as a
CloudEvent `message.sent`, `message.failed` or `message.suppressed` (schemas/data/message.*).

The event id is derived from the message id and the outcome (and, for failures, the attempt),
so a redelivered command or a replayed outbox row yields the same event, which consumers
dedupe on `source` + `id`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.cloudevent import new_event
from schemas.records import SendMessage

SOURCE = "nurture-dispatch"
Outcome = Literal["sent", "failed", "suppressed"]
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one attempt, as reported."""

    outcome: Outcome
    attempt: int
    reason: str | None = None  # failed, suppressed
    retryable: bool = False  # failed
    provider_message_id: str | None = None  # sent


def event_id(message_id: str, outcome: Outcome, attempt: int | None = None) -> str:
    """Deterministic CloudEvent id of an outcome (per attempt for failures)."""
    raw = f"{message_id}|{outcome}" + (f"|{attempt}" if attempt is not None else "")
    return "dsp_" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def outcome_event(cmd: SendMessage, result: Result, *, now: datetime) -> dict[str, Any]:
    """The CloudEvent (structured JSON, as a dict) reporting `result` for `cmd`."""
    data: dict[str, Any] = {"message_id": cmd.message_id, "channel": cmd.channel,
                            "program_id": cmd.program_id, "step_id": cmd.step_id,
                            "attempt": max(1, result.attempt)}
    if cmd.template:
        data["template_id"] = cmd.template
    if result.outcome == "sent":
        if result.provider_message_id:
            data["provider_message_id"] = result.provider_message_id[:MAX_REASON]
    else:
        data["reason"] = (result.reason or "unknown")[:MAX_REASON]
    if result.outcome == "failed":
        data["retryable"] = result.retryable
    per_attempt = data["attempt"] if result.outcome == "failed" else None
    return new_event(id=event_id(cmd.message_id, result.outcome, per_attempt), source=SOURCE,
                     type=f"message.{result.outcome}", subject=cmd.lead_id, data=data,
                     time=now.astimezone(UTC).isoformat().replace("+00:00", "Z"))
