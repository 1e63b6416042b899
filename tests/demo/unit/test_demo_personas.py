"""The simulated population: reproducible, shaped by persona, and sales never out of order."""

from __future__ import annotations

from collections import Counter

import pytest

from deploy.demo import personas as p
from deploy.demo.personas import DAY, LeadState, plan, population, react
from schemas.validation import validate_event


def run_lead(lead: p.LeadSpec, days: int, seed: int,
             clicks: bool = False) -> tuple[list[p.SimEvent], LeadState]:
    """The lead's events over `days`; sales gets a hand-off a day after a demo request."""
    state, events = LeadState(), []
    for k in range(days * 4):
        if clicks and k % 8 == 0:
            state = p.replace(state, intent=3.0)
        if state.demo_at is not None and state.demo_at + DAY <= k * DAY / 4:
            state = p.handed_off(state, state.demo_at + DAY)
        out, state = plan(lead, state, k * DAY / 4, (k + 1) * DAY / 4, seed)
        events += out
    return events, state


def test_population_is_reproducible_and_seed_dependent() -> None:
    assert population(50, 60, seed=1) == population(50, 60, seed=1)
    assert population(50, 60, seed=1) != population(50, 60, seed=2)


def test_population_mixes_personas_by_share_and_arrives_in_the_first_two_thirds() -> None:
    leads = population(3000, 90, seed=3)
    shares = Counter(lead.persona for lead in leads)
    for persona in p.PERSONAS:
        assert abs(shares[persona.name] / 3000 - persona.share) < 0.04
    assert all(0 <= lead.arrives <= 60 * DAY for lead in leads)
    assert [lead.arrives for lead in leads] == sorted(lead.arrives for lead in leads)
    no_email = sum("email" not in lead.profile for lead in leads) / 3000
    assert abs(no_email - p.NO_EMAIL) < 0.03


def test_plan_is_pure() -> None:
    lead = population(1, 30, seed=4)[0]
    assert run_lead(lead, 30, seed=4) == run_lead(lead, 30, seed=4)


def test_first_events_are_the_crm_record_and_events_stay_in_the_window() -> None:
    lead = population(1, 30, seed=5)[0]
    state = LeadState()
    assert plan(lead, state, 0, lead.arrives, 5) == ([], state)  # before arrival: nothing
    events, _ = plan(lead, state, lead.arrives - 10, lead.arrives + DAY, 5)
    assert "crm.lead_upserted" in [e.type for e in events[:2]]
    assert all(lead.arrives <= e.at < lead.arrives + DAY for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_personas_behave_differently() -> None:
    leads = population(400, 60, seed=6)
    demos: Counter[str] = Counter()
    pricing: Counter[str] = Counter()
    for lead in leads:
        events, _ = run_lead(lead, 60, seed=6)
        demos[lead.persona] += any(e.data.get("form_type") == "demo_request" for e in events)
        pricing[lead.persona] += sum(e.data.get("path") == "/pricing" for e in events)
    n = Counter(lead.persona for lead in leads)
    assert demos["buyer"] / n["buyer"] > 0.8
    assert demos["drive-by"] == 0
    assert pricing["evaluator"] / n["evaluator"] > pricing["researcher"] / n["researcher"]


def test_sales_opens_before_it_closes_and_uses_the_opportunity_amount() -> None:
    won = lost = 0
    for lead in population(300, 90, seed=8):
        if lead.persona != "buyer":
            continue
        events, state = run_lead(lead, 90, seed=8)
        crm = [e for e in events if e.type.startswith("crm.") and e.type != "crm.lead_upserted"]
        if not crm:
            continue
        assert crm[0].type == "crm.opportunity_opened"
        assert state.sales_at is not None
        assert crm[0].at >= state.sales_at + 3 * DAY
        assert len(crm) <= 2
        if len(crm) == 2:
            assert crm[1].type in ("crm.deal_won", "crm.deal_lost")
            assert crm[1].data["amount"] == crm[0].data["amount"]
            assert crm[1].at > crm[0].at
            won += crm[1].type == "crm.deal_won"
            lost += crm[1].type == "crm.deal_lost"
    assert won and lost


def test_intent_from_clicks_raises_demo_requests() -> None:
    leads = [lead for lead in population(1500, 60, seed=9) if lead.persona == "evaluator"]
    plain = sum(any(e.data.get("form_type") == "demo_request" for e in run_lead(lead, 60, 9)[0])
                for lead in leads)
    keen = sum(any(e.data.get("form_type") == "demo_request"
                   for e in run_lead(lead, 60, 9, clicks=True)[0]) for lead in leads)
    assert keen > plain * 1.5


def test_every_persona_plans_at_the_highest_intent() -> None:
    for lead in population(200, 30, seed=13):
        events, state = run_lead(lead, 30, 13, clicks=True)
        assert state.intent == 3.0
        assert all(0 <= e.at < 30 * DAY for e in events)


def test_react_is_seeded_and_a_click_needs_an_open() -> None:
    lead = population(1, 30, seed=10)[0]
    outcomes = [react(lead, LeadState(), f"m{i}", 10) for i in range(500)]
    assert outcomes == [react(lead, LeadState(), f"m{i}", 10) for i in range(500)]
    assert all(r.opened for r, _ in outcomes if r.clicked)
    for reaction, state in outcomes:
        assert state.intent == (1.5 if reaction.clicked else 1.0)
        assert state.unsubscribed == reaction.unsubscribed


def test_no_opportunity_without_a_hand_off() -> None:
    for lead in population(100, 60, seed=14):
        state = LeadState()
        for k in range(60 * 4):
            events, state = plan(lead, state, k * DAY / 4, (k + 1) * DAY / 4, 14)
            assert not [e for e in events if e.type in ("crm.opportunity_opened",
                                                        "crm.deal_won", "crm.deal_lost")]


def test_handed_off_keeps_the_first_moment() -> None:
    state = p.handed_off(LeadState(), 100.0)
    assert p.handed_off(state, 200.0).sales_at == 100.0


@pytest.mark.parametrize("seed", [11, 12])
def test_every_event_matches_its_schema(seed: int) -> None:
    for lead in population(40, 45, seed=seed):
        for ev in run_lead(lead, 45, seed)[0]:
            errors = validate_event({"specversion": "1.0", "id": "x", "source": "s",
                                     "type": ev.type, "subject": lead.lead_id, "data": ev.data})
            assert not errors, (ev, errors)
