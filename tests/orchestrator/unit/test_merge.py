"""Folding one lead into another (domain/merge.py): nothing lost, nothing sent twice."""

from __future__ import annotations

from services.orchestrator.domain.lead import Contact, Enrollment, Lead
from services.orchestrator.domain.merge import merge_leads


def lead(lead_id: str, **fields: object) -> Lead:
    return Lead(lead_id, created_at=100.0, **fields)  # type: ignore[arg-type]


def test_a_suppression_on_either_side_holds_and_the_newest_profile_value_wins() -> None:
    winner = lead("w", suppressed={"email": "unsubscribed"}, profile={"company": "New"},
                  profile_time={"company": 50.0}, last_activity_at=10.0)
    loser = lead("l", suppressed={"sms": "opted_out", "email": "hard_bounce"},
                 profile={"company": "Old", "email": "a@x.io"},
                 profile_time={"company": 40.0, "email": 45.0}, last_activity_at=20.0,
                 furthest="mql", contacts=[Contact(5.0, "email", "p")])
    merged, moved = merge_leads(winner, loser, "w")
    assert merged.suppressed == {"email": "unsubscribed", "sms": "opted_out"}
    assert merged.profile == {"company": "New", "email": "a@x.io"}
    assert (merged.last_activity_at, merged.furthest, len(merged.contacts)) == (20.0, "mql", 1)
    assert moved == ()
    assert winner.suppressed == {"email": "unsubscribed"}  # the inputs are left alone


def test_the_winners_enrollment_in_a_program_stays_even_when_it_has_ended() -> None:
    done = Enrollment("p", 1, entered_at=1.0, status="completed")
    winner = lead("w", enrollments={"p": done})
    loser = lead("l", enrollments={"p": Enrollment("p", 1, entered_at=2.0),
                                   "q": Enrollment("q", 1, entered_at=3.0)})
    merged, moved = merge_leads(winner, loser, "w")
    assert moved == ("q",)
    assert merged.enrollments["p"].status == "completed" and merged.enrollments["q"].active


def test_a_new_lead_is_the_absorbed_one_under_its_new_id() -> None:
    loser = lead("anon", stage="mql", enrollments={"p": Enrollment("p", 1, entered_at=2.0)})
    merged, moved = merge_leads(None, loser, "user")
    assert (merged.lead_id, merged.stage, moved) == ("user", "mql", ("p",))
