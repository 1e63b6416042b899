"""Which events suppress or lift a channel, and how a batch of them folds into one change per
lead and channel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.dispatch.adapters.events import suppression_changes
from services.dispatch.domain.suppressions import Change, changes_of, latest

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def event(etype: str, data: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e1", "source": "s", "type": etype, "subject": "lead-1",
            "time": "2026-02-01T09:00:00Z", "data": data} | attrs


@pytest.mark.parametrize(("etype", "data", "expected"), [
    ("email.unsubscribed", {"message_id": "m"}, [("email", "unsubscribed")]),
    ("email.complained", {"message_id": "m"}, [("email", "complained")]),
    ("email.bounced", {"message_id": "m", "bounce_type": "hard"}, [("email", "hard_bounce")]),
    ("email.bounced", {"message_id": "m", "bounce_type": "soft"}, []),
    ("sms.opted_out", {}, [("sms", "opted_out")]),
    ("crm.lead_upserted", {"consent": {"email": "granted", "sms": "denied"}},
     [("email", None)]),
    ("crm.lead_upserted", {"email": "a@b.c"}, []),
    ("web.page_viewed", {"url": "https://x"}, []),
])
def test_event_rules(etype: str, data: dict[str, Any],
                     expected: list[tuple[str, str | None]]) -> None:
    assert changes_of(event(etype, data), now=NOW) == [
        Change("lead-1", channel, reason, T1) for channel, reason in expected]


def test_an_event_without_time_counts_as_now_and_one_without_lead_is_ignored() -> None:
    (change,) = changes_of(event("sms.opted_out", {}, time=None), now=NOW)
    assert change.at == NOW
    assert changes_of(event("sms.opted_out", {}, subject=None), now=NOW) == []


def test_the_latest_change_per_lead_and_channel_wins() -> None:
    later = datetime(2026, 2, 2, tzinfo=UTC)
    stop = Change("lead-1", "email", "unsubscribed", T1)
    again = Change("lead-1", "email", None, later)
    other = Change("lead-2", "email", "complained", T1)
    assert latest([again, stop, other]) == [again, other]
    assert latest([stop, again]) == [again]


def record(value: bytes, ce_type: str | None) -> ConsumerRecord[bytes, bytes]:
    headers = [("ce_type", ce_type.encode())] if ce_type else []
    return ConsumerRecord("t", 0, 0, 0, 0, b"lead-1", value, None, 6, len(value), headers)


def test_a_batch_skips_other_events_by_header_and_garbage() -> None:
    unsub = orjson.dumps(event("email.unsubscribed", {"message_id": "m"}))
    records = [record(b"{not json", None), record(unsub, "email.unsubscribed"),
               record(b"{never parsed", "web.page_viewed"),
               record(orjson.dumps(event("sms.opted_out", {})), None)]
    assert suppression_changes(records, now=NOW) == [
        Change("lead-1", "email", "unsubscribed", T1), Change("lead-1", "sms", "opted_out", T1)]


def test_binary_mode_records_and_our_type_header_are_read_like_structured_ones() -> None:
    binary = ConsumerRecord("t", 0, 1, 0, 0, b"lead-1", orjson.dumps({"message_id": "m"}), None,
                            6, 20, [("ce_specversion", b"1.0"), ("ce_id", b"e2"),
                                    ("ce_source", b"s"), ("ce_type", b"email.complained"),
                                    ("ce_subject", b"lead-1"),
                                    ("ce_time", b"2026-02-01T09:00:00Z"),
                                    ("content-type", b"application/json")])
    skipped = ConsumerRecord("t", 0, 2, 0, 0, b"lead-1", b"{never parsed", None, 6, 13,
                             [("nurture-event-type", b"web.page_viewed")])
    assert suppression_changes([binary, skipped], now=NOW) == [
        Change("lead-1", "email", "complained", T1)]
