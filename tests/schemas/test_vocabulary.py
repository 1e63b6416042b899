"""The shared words: one definition each (schemas/vocabulary.py)."""

from __future__ import annotations

import pytest

from schemas.vocabulary import (
    CHANNELS,
    SUPPRESSION_REASONS,
    canonical_reason,
    dedupe_key,
    event_epoch,
    rfc3339,
    suppression_of,
)


@pytest.mark.parametrize(("etype", "data", "expected"), [
    ("email.unsubscribed", {}, ("email", "unsubscribed")),
    ("email.complained", {}, ("email", "complained")),
    ("sms.opted_out", {}, ("sms", "opted_out")),
    ("email.bounced", {"bounce_type": "hard"}, ("email", "hard_bounce")),
    ("email.bounced", {"bounce_type": "soft"}, None),
    ("email.opened", {}, None),
    ("crm.lead_upserted", {"consent": {"email": "denied"}}, None),
])
def test_which_events_suppress_which_channel(etype: str, data: dict[str, str],
                                             expected: tuple[str, str] | None) -> None:
    assert suppression_of(etype, data) == expected
    if expected:
        assert expected[0] in CHANNELS and expected[1] in SUPPRESSION_REASONS


@pytest.mark.parametrize(("stored", "today"), [
    ("complaint", "complained"), ("opted out", "opted_out"), ("hard bounce", "hard_bounce"),
    ("unsubscribed", "unsubscribed"), ("erased", "erased")])
def test_reasons_stored_before_the_words_were_unified_read_as_today(stored: str,
                                                                    today: str) -> None:
    assert canonical_reason(stored) == today


def test_dedupe_key_separates_source_and_id() -> None:
    assert dedupe_key("https://x", "1") == "https://x\x1f1"


@pytest.mark.parametrize("value", [None, 5, "2026-13-01T00:00:00Z", "2026-01-01T00:00:00",
                                   "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"])
def test_unusable_event_times_are_refused_with_why(value: object) -> None:
    with pytest.raises(ValueError, match="'time'"):
        event_epoch(value)


def test_event_time_round_trip() -> None:
    assert rfc3339(event_epoch("2026-11-24T09:30:00+01:00")) == "2026-11-24T08:30:00.000Z"
