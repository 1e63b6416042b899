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


def test_the_decisions_return_a_new_lead_and_leave_the_one_given_as_it_was() -> None:
    from tests.orchestrator.unit.test_handlers import T0, decider

    the_decider = decider()
    lead, _ = the_decider.decide_event(None, "lead-1", {
        "id": "e0", "source": "t", "type": "crm.lead_upserted", "subject": "lead-1",
        "data": {"email": "a@x.io"}}, {}, event_time=T0, now=T0)
    before = lead.to_dict()
    after, fx = the_decider.decide_event(lead, "lead-1", {
        "id": "e1", "source": "t", "type": "web.page_viewed", "subject": "lead-1",
        "data": {"path": "/pricing"}}, {}, event_time=T0, now=T0)
    assert after.enrollments["pricing"].active and fx.timers
    assert lead.to_dict() == before
    (timer,) = fx.timers
    fired, fx = the_decider.decide_timer(after, timer, timer.due_at)
    assert fx.commands and after.enrollments["pricing"].step == 0
    assert fired.enrollments["pricing"].step != 0
    removed, _ = the_decider.decide_unenroll(after, "pricing", T0 + 60)
    assert after.enrollments["pricing"].active and not removed.enrollments["pricing"].active
