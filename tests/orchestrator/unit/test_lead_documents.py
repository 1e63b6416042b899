"""Lead documents stored before the shared vocabulary (schemas.vocabulary) still load, with the
suppression reasons in today's words, so a rolling upgrade keeps every suppression."""

from __future__ import annotations

from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.policy import ContactPolicy, suppression


def test_old_suppression_words_are_read_as_the_new_ones() -> None:
    old = Lead("lead-1").to_dict() | {"suppressed": {
        "email": "complaint", "sms": "opted out", "all": "cold"}}
    lead = Lead.from_dict(old)
    assert lead.suppressed == {"email": "complained", "sms": "opted_out", "all": "cold"}
    assert suppression(lead, "email", ContactPolicy()) == "suppressed: complained"


def test_a_hard_bounce_stored_before_reads_as_hard_bounce() -> None:
    old = Lead("lead-1").to_dict() | {"suppressed": {"email": "hard bounce"}}
    assert Lead.from_dict(old).suppressed == {"email": "hard_bounce"}
