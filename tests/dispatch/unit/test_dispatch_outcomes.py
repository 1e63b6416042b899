"""Outcome events are valid CloudEvents whose data matches schemas/data/message.*, with ids
that are the same for the same outcome of the same message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import pytest

from schemas import validate_event
from schemas.records import SendMessage
from schemas.vocabulary import OUTCOME_EVENTS
from services.dispatch.domain.outcomes import Outcome, Result, event_id, outcome_event

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CMD = SendMessage(message_id="0123456789abcdef0123456789abcdef", lead_id="lead-1",
                  channel="email", template="pricing-followup", program_id="pricing",
                  step_id="email-1", context={"email": "ada@example.com"})
TASK = SendMessage(message_id="m2", lead_id="lead-1", channel="crm_task", template=None,
                   program_id="pricing", step_id="call", subject="Call")


@pytest.mark.parametrize(("cmd", "result"), [
    (CMD, Result("sent", 1, provider_message_id="<0123@mail.example.com>")),
    (CMD, Result("sent", 2)),
    (CMD, Result("failed", 3, reason="smtp_4xx", retryable=True)),
    (CMD, Result("failed", 5, reason="x" * 900)),
    (CMD, Result("suppressed", 1, reason="unsubscribed")),
    (TASK, Result("suppressed", 0, reason="expired")),
    (TASK, Result("sent", 1, provider_message_id="task-9")),
])
def test_every_outcome_event_validates(cmd: SendMessage, result: Result) -> None:
    event = outcome_event(cmd, result, now=NOW)
    assert validate_event(event) == []
    assert (event["type"], event["source"], event["subject"]) == (
        f"message.{result.outcome}", "nurture-dispatch", "lead-1")
    assert event["time"] == "2026-03-01T09:00:00Z"
    assert event["data"]["message_id"] == cmd.message_id


def test_ids_are_deterministic_per_outcome_and_failed_attempt() -> None:
    sent = outcome_event(CMD, Result("sent", 1), now=NOW)
    again = outcome_event(CMD, Result("sent", 1), now=datetime(2027, 1, 1, tzinfo=UTC))
    assert sent["id"] == again["id"] == event_id(CMD.message_id, "sent")
    failures = {outcome_event(CMD, Result("failed", n, reason="r"), now=NOW)["id"]
                for n in (1, 2, 3)}
    assert len(failures) == 3
    assert sent["id"] != outcome_event(CMD, Result("suppressed", 1, reason="r"), now=NOW)["id"]


def test_failed_events_say_whether_dispatch_retries() -> None:
    event = outcome_event(CMD, Result("failed", 2, reason="smtp_4xx", retryable=True), now=NOW)
    assert event["data"] == {"message_id": CMD.message_id, "channel": "email",
                             "program_id": "pricing", "step_id": "email-1",
                             "template_id": "pricing-followup", "attempt": 2,
                             "reason": "smtp_4xx", "retryable": True}


def test_the_outcome_types_are_the_ones_ingest_refuses_from_clients() -> None:
    # schemas/vocabulary.py names them once for ingest's refusal; dispatch builds them here
    assert {f"message.{outcome}" for outcome in get_args(Outcome)} == OUTCOME_EVENTS
