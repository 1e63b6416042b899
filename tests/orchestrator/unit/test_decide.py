"""The orchestrator's pure decisions: stages, program steps, triggers and exits. Programs are
built from the domain dataclasses here; the shipped YAML playbooks have their own tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from schemas.records import ModelScore
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects, Timer
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import (
    DEFAULT_MAX_EVENT_AGE_SECONDS,
    Branch,
    EventMatch,
    Program,
    Step,
    Trigger,
)
from services.orchestrator.domain.stages import next_stage
from tests.support import model_score

H, D = 3600, 86400
T0 = 1_790_000_000.0  # 2026-09-21 14:13 UTC (a Monday afternoon)
NO_LIMITS = ContactPolicy(caps=(), quiet_hours=None)


def on(etype: str, when: Any = None) -> EventMatch:
    return EventMatch(frozenset({etype}), when or (lambda _d: True))


def path_is(prefix: str) -> Any:
    return lambda d: str(d.get("path", "")).startswith(prefix)


PRICING = Program(
    id="pricing", version=1, name="Pricing abandoner", priority=60,
    trigger=Trigger("event", event=on("web.page_viewed", path_is("/pricing"))),
    exclude_stages=frozenset({"sql", "opportunity", "customer"}),
    goal=on("web.form_submitted", lambda d: d.get("form_type") == "demo_request"),
    steps=(Step("wait-1h", "wait", seconds=H),
           Step("email-1", "send", channel="email", template="pricing-followup"),
           Step("wait-2d", "wait", seconds=2 * D),
           Step("case-study", "send", channel="email", template="case-study"),
           Step("wait-click", "wait_for", event=on("email.clicked"), seconds=4 * D,
                on_event="call-offer", on_timeout="tag-quiet"),
           Step("tag-quiet", "tag", tag="pricing-quiet"),
           Step("stop", "exit", reason="no click"),
           Step("call-offer", "task", subject="Offer a call", due_seconds=D)))


def lead(**profile: Any) -> Lead:
    return Lead("lead-1", stage="lead", profile={"email": "a@b.example", **profile})


def event(etype: str, **data: Any) -> dict[str, Any]:
    return {"type": etype, "data": data}


def fire_due(decider: Decider, the_lead: Lead, timers: list[Timer], until: float) -> Effects:
    """Fire every timer due by `until`, in time order, like the timer poller does."""
    out = Effects()
    pending = sorted(timers, key=lambda t: t.due_at)
    while pending and pending[0].due_at <= until:
        timer = pending.pop(0)
        fx = decider.on_timer(the_lead, timer, timer.due_at)
        for name in ("commands", "stage_changes", "notes", "enrollments"):
            getattr(out, name).extend(getattr(fx, name))
        pending = sorted(pending + fx.timers, key=lambda t: t.due_at)
    out.timers = pending
    return out


def test_pricing_abandoner_runs_its_steps_on_time() -> None:
    decider, the_lead = Decider([PRICING], NO_LIMITS), lead()
    fx = decider.on_event(the_lead, event("web.page_viewed", url="u", path="/pricing"), {},
                          event_time=T0, now=T0)
    assert [(e.program_id, e.status) for e in fx.enrollments] == [("pricing", "entered")]
    assert fx.commands == []
    assert [t.due_at for t in fx.timers] == [T0 + H]
    later = fire_due(decider, the_lead, fx.timers, T0 + 3 * D)
    assert [(c.template, c.created_at) for c in later.commands] == [
        ("pricing-followup", T0 + H), ("case-study", T0 + H + 2 * D)]
    assert the_lead.enrollments["pricing"].waiting == "event"


def test_click_during_wait_for_takes_the_event_path_and_timeout_the_other() -> None:
    decider, clicked = Decider([PRICING], NO_LIMITS), lead()
    fx = decider.on_event(clicked, event("web.page_viewed", path="/pricing"), {},
                          event_time=T0, now=T0)
    fire_due(decider, clicked, fx.timers, T0 + 3 * D)
    fx = decider.on_event(clicked, event("email.clicked", message_id="m", url="u"), {},
                          event_time=T0 + 3 * D, now=T0 + 3 * D)
    assert [(c.channel, c.subject) for c in fx.commands] == [("crm_task", "Offer a call")]
    assert clicked.enrollments["pricing"].status == "completed"

    quiet = lead()
    fx = decider.on_event(quiet, event("web.page_viewed", path="/pricing"), {},
                          event_time=T0, now=T0)
    rest = fire_due(decider, quiet, fx.timers, T0 + 10 * D)
    assert "pricing-quiet" in quiet.tags
    assert [(e.status, e.reason) for e in rest.enrollments] == [("exited", "no click")]


def test_goal_exits_and_stage_change_into_an_excluded_stage_exits() -> None:
    decider, the_lead = Decider([PRICING], NO_LIMITS), lead()
    decider.on_event(the_lead, event("web.page_viewed", path="/pricing"), {},
                     event_time=T0, now=T0)
    fx = decider.on_event(the_lead, event("web.form_submitted", form_id="f",
                                          form_type="demo_request"), {},
                          event_time=T0 + 60, now=T0 + 60)
    assert [(e.status, e.reason) for e in fx.enrollments] == [("exited", "goal")]

    other = lead()
    decider.on_event(other, event("web.page_viewed", path="/pricing"), {},
                     event_time=T0, now=T0)
    crossed_sql = {"b2b": model_score(120, crossed=[("mql", "up"), ("sql", "up")])}
    fx = decider.on_event(other, event("web.page_viewed", path="/docs"), crossed_sql,
                          event_time=T0 + 60, now=T0 + 60)
    assert [(s.from_stage, s.to_stage) for s in fx.stage_changes] == [("lead", "sql")]
    assert [(e.status, e.reason) for e in fx.enrollments] == [
        ("exited", "stage changed to sql")]


def test_stale_timer_of_an_earlier_step_does_nothing() -> None:
    decider, the_lead = Decider([PRICING], NO_LIMITS), lead()
    fx = decider.on_event(the_lead, event("web.page_viewed", path="/pricing"), {},
                          event_time=T0, now=T0)
    (timer,) = fx.timers
    fire_due(decider, the_lead, [timer], T0 + H)
    again = decider.on_timer(the_lead, timer, T0 + 2 * H)  # redelivered / duplicate timer
    assert again.commands == [] and again.timers == []


@pytest.mark.parametrize(("reentry", "after", "gap", "enters"), [
    ("never", 0, 100 * D, False),
    ("always", 0, 1, True),
    ("after", 30 * D, 10 * D, False),
    ("after", 30 * D, 31 * D, True),
])
def test_reentry_policy(reentry: str, after: int, gap: float, enters: bool) -> None:
    program = Program(id="p", version=1, name="p", trigger=Trigger("event", event=on("web.x")),
                      steps=(Step("s", "send", channel="email", template="t"),),
                      reentry=reentry, reentry_after_seconds=after)  # type: ignore[arg-type]
    decider, the_lead = Decider([program], NO_LIMITS), lead()
    decider.on_event(the_lead, event("web.x"), {}, event_time=T0, now=T0)
    assert the_lead.enrollments["p"].status == "completed"
    fx = decider.on_event(the_lead, event("web.x"), {}, event_time=T0 + gap, now=T0 + gap)
    assert bool(fx.commands) is enters


def test_entry_conditions_branches_set_stage_tag_and_enroll_another_program() -> None:
    follow_up = Program(id="follow", version=1, name="f", trigger=Trigger("manual"),
                        steps=(Step("hello", "send", channel="email", template="hello"),))
    main = Program(
        id="main", version=1, name="m",
        trigger=Trigger("event", event=on("web.content_downloaded")),
        entry=lambda f: f.get("seniority") != "intern",
        steps=(Step("route", "branch", branches=(
                   Branch(lambda f: "analytics" in f["interests"], "analytics"),),
                   otherwise="generic"),
               Step("analytics", "send", channel="email", template="analytics-guide"),
               Step("generic", "tag", tag="generic"),
               Step("promote", "set_stage", stage="mql"),
               Step("chain", "enroll", program="follow")))
    decider = Decider([main, follow_up], NO_LIMITS)
    intern = lead(seniority="intern")
    assert decider.on_event(intern, event("web.content_downloaded"), {},
                            event_time=T0, now=T0).enrollments == []
    reader = lead()
    reader.interests = ["analytics"]
    fx = decider.on_event(reader, event("web.content_downloaded"), {}, event_time=T0, now=T0)
    assert [c.template for c in fx.commands] == ["analytics-guide", "hello"]
    assert reader.tags == ["generic"]  # the branch target falls through to the next steps
    assert [(s.to_stage, s.cause) for s in fx.stage_changes] == [("mql", "program main")]
    assert reader.enrollments["follow"].status == "completed"


def test_manual_programs_enroll_only_through_the_api() -> None:
    manual = Program(id="sales-add", version=1, name="m", trigger=Trigger("manual"),
                     steps=(Step("hi", "send", channel="email", template="hi"),))
    decider, the_lead = Decider([manual], NO_LIMITS), lead()
    assert decider.on_event(the_lead, event("web.page_viewed"), {}, event_time=T0,
                            now=T0).enrollments == []
    fx = decider.enroll(the_lead, "sales-add", T0)
    assert [c.template for c in fx.commands] == ["hi"]
    with pytest.raises(KeyError):
        decider.enroll(the_lead, "nope", T0)


def test_inactivity_and_date_triggers_fire_from_timers() -> None:
    idle = Program(id="reengage", version=1, name="r",
                   trigger=Trigger("inactivity", inactive_seconds=60 * D),
                   steps=(Step("miss-you", "send", channel="email", template="miss-you"),))
    renewal = Program(id="renewal-90", version=1, name="r",
                      trigger=Trigger("date", date_field="contract_renewal_date",
                                      offset_seconds=-90 * D),
                      steps=(Step("renew", "send", channel="email", template="renew"),))
    decider, the_lead = Decider([idle, renewal], NO_LIMITS), lead()
    fx = decider.on_event(the_lead, event("web.page_viewed"), {}, event_time=T0, now=T0)
    (inactive,) = fx.timers
    assert (inactive.kind, inactive.due_at) == ("inactivity", T0 + 60 * D)
    fx2 = decider.on_event(the_lead, event("crm.lead_upserted",
                                           contract_renewal_date="2027-06-30"), {},
                           event_time=T0 + 1, now=T0 + 1)
    (date_timer,) = fx2.timers
    assert date_timer.kind == "date"
    assert decider.on_timer(the_lead, inactive, T0 + 60 * D).commands[0].template == "miss-you"
    assert decider.on_timer(the_lead, date_timer, date_timer.due_at).commands[0].template \
        == "renew"


def test_activity_before_the_inactivity_timer_fires_prevents_enrollment() -> None:
    idle = Program(id="reengage", version=1, name="r",
                   trigger=Trigger("inactivity", inactive_seconds=60 * D),
                   steps=(Step("miss-you", "send", channel="email", template="miss-you"),))
    decider, the_lead = Decider([idle], NO_LIMITS), lead()
    (first,) = decider.on_event(the_lead, event("web.page_viewed"), {}, event_time=T0,
                                now=T0).timers
    decider.on_event(the_lead, event("web.page_viewed"), {}, event_time=T0 + 30 * D,
                     now=T0 + 30 * D)
    assert decider.on_timer(the_lead, first, T0 + 60 * D).enrollments == []


def test_same_inputs_same_decisions_and_message_ids() -> None:
    def run() -> list[str]:
        decider, the_lead = Decider([PRICING], NO_LIMITS), lead()
        fx = decider.on_event(the_lead, event("web.page_viewed", path="/pricing"), {},
                              event_time=T0, now=T0)
        return [c.message_id for c in fire_due(decider, the_lead, fx.timers, T0 + 5 * D).commands]
    first = run()
    assert len(first) == 2 and len(set(first)) == 2
    assert run() == first


def test_lead_survives_serialization() -> None:
    decider, the_lead = Decider([PRICING], NO_LIMITS), lead()
    decider.on_event(the_lead, event("web.page_viewed", path="/pricing"), {},
                     event_time=T0, now=T0)
    assert Lead.from_dict(the_lead.to_dict()) == the_lead


# --- stage transitions ----------------------------------------------------------------------

def crossing(threshold: str, direction: str) -> Mapping[str, ModelScore]:
    return {"b2b": model_score(crossed=[(threshold, direction)])}


@pytest.mark.parametrize(("stage", "etype", "score", "expected"), [
    ("lead", "crm.deal_won", {}, "customer"),
    ("customer", "crm.deal_won", {}, None),
    ("opportunity", "crm.deal_lost", {}, "recycled"),
    ("mql", "crm.opportunity_opened", {}, "opportunity"),
    ("lead", "web.page_viewed", crossing("sql", "up"), "sql"),
    ("mql", "web.page_viewed", crossing("sql", "up"), "sql"),
    ("opportunity", "web.page_viewed", crossing("sql", "up"), None),
    ("lead", "web.page_viewed", crossing("mql", "up"), "mql"),
    ("sql", "web.page_viewed", crossing("mql", "up"), None),
    ("mql", "web.page_viewed", crossing("mql", "down"), "lead"),
    ("sql", "web.page_viewed", crossing("mql", "down"), None),
    ("cold", "web.page_viewed", {}, "lead"),
    ("cold", "email.delivered", {}, None),
    ("subscriber", "web.form_submitted", {}, "lead"),
    ("lead", "web.page_viewed", {}, None),
])
def test_stage_transitions(stage: str, etype: str, score: Mapping[str, ModelScore],
                           expected: str | None) -> None:
    the_lead = Lead("x", stage=stage)
    change = next_stage(the_lead, etype, {}, score, "b2b")
    assert (change[0] if change else None) == expected


def test_an_edited_program_carries_enrollments_over_by_step_id() -> None:
    decider, the_lead = Decider([PRICING], NO_LIMITS), lead()
    fx = decider.on_event(the_lead, event("web.page_viewed", path="/pricing"), {},
                          event_time=T0, now=T0)
    (timer,) = fx.timers
    # v2 puts a new step first and rewords the email; the lead waits in "wait-1h" still
    v2 = Program(id="pricing", version=2, name="Pricing", trigger=PRICING.trigger,
                 steps=(Step("intro", "tag", tag="new-first-step"), *PRICING.steps[:1],
                        Step("email-1", "send", channel="email", template="pricing-v2")))
    edited = Decider([v2], NO_LIMITS)
    out = edited.on_timer(the_lead, timer, T0 + H)
    assert [c.template for c in out.commands] == ["pricing-v2"]
    assert the_lead.enrollments["pricing"].program_version == 2
    assert "new-first-step" not in the_lead.tags

    other = lead()
    fx = decider.on_event(other, event("web.page_viewed", path="/pricing"), {},
                          event_time=T0, now=T0)
    gone = Program(id="pricing", version=3, name="Pricing", trigger=PRICING.trigger,
                   steps=(Step("only", "send", channel="email", template="x"),))
    out = Decider([gone], NO_LIMITS).on_timer(other, fx.timers[0], T0 + H)
    assert [(e.status, e.reason) for e in out.enrollments] == [("exited", "program changed")]


def test_consent_granted_again_lifts_an_opt_out_but_not_a_complaint() -> None:
    decider, the_lead = Decider([], NO_LIMITS), lead()
    decider.on_event(the_lead, event("sms.opted_out", keyword="STOP"), {}, event_time=T0, now=T0)
    decider.on_event(the_lead, event("email.complained", message_id="m"), {}, event_time=T0,
                     now=T0)
    assert the_lead.suppressed == {"sms": "opted_out", "email": "complained"}
    decider.on_event(the_lead, event("crm.lead_upserted",
                                     consent={"sms": "granted", "email": "granted"}), {},
                     event_time=T0 + 60, now=T0 + 60)
    assert the_lead.suppressed == {"email": "complained"}


def test_what_an_event_causes_at_once_carries_its_id_and_time_to_dispatch() -> None:
    """dispatch's log lines name the event behind a message (tests/observability), so the
    command carries it, through the outbox row."""
    from services.common.kafka.topics import Topics
    from services.orchestrator.adapters.records import outbox_rows

    instant = Program(id="instant", version=1, name="Instant", trigger=Trigger(
        "event", event=on("web.form_submitted")),
        steps=(Step("hello", "send", channel="email", template="welcome-hello"),))
    decider = Decider([instant], NO_LIMITS)
    form = {**event("web.form_submitted", form_id="f"), "id": "evt-form-9"}
    _, fx = decider.on_event_for(lead(), "lead-1", form, {}, event_time=T0, now=T0)
    assert [(c.event_id, c.event_time) for c in fx.commands] == [("evt-form-9", T0)]
    (row,) = [r for r in outbox_rows("lead-1", fx, Topics()) if r.topic == Topics().dispatch]
    assert orjson.loads(row.value)["event_id"] == "evt-form-9"
    # a timer's command has no event behind it
    pricing, the_lead = Decider([PRICING], NO_LIMITS), lead()
    viewed = {**event("web.page_viewed", path="/pricing"), "id": "evt-view-1"}
    _, fx = pricing.on_event_for(the_lead, "lead-1", viewed, {}, event_time=T0, now=T0)
    later = fire_due(pricing, the_lead, fx.timers, T0 + 3 * D)
    assert [c.event_id for c in later.commands] == [None, None]


# -- events that age: what an old event causes does not start follow-ups --------------------

HANDOFF = Program(id="handoff", version=1, name="Hot lead", trigger=Trigger("stage", stage="sql"),
                  steps=(Step("alert", "task", subject="Call them"),), max_event_age_seconds=D)


@pytest.mark.parametrize(("age", "limit", "entered"), [
    (23 * H, D, True), (D + 1, D, False), (90 * D, D, False), (90 * D, None, True),
    (3 * H, 2 * H, False), (365 * D, DEFAULT_MAX_EVENT_AGE_SECONDS, False),
    (2 * D, DEFAULT_MAX_EVENT_AGE_SECONDS, True)])
def test_an_event_older_than_max_event_age_starts_no_enrollment(
        age: float, limit: int | None, entered: bool) -> None:
    program = Program(**{**{f: getattr(PRICING, f) for f in ("id", "version", "name",
                                                              "trigger", "steps")},
                         "max_event_age_seconds": limit})
    the_lead = lead()
    fx = Decider([program], NO_LIMITS).on_event(
        the_lead, event("web.page_viewed", path="/pricing"), {}, event_time=T0, now=T0 + age)
    expected = ("pricing", "entered", "event web.page_viewed") if entered else \
        ("pricing", "skipped", "event older than max_event_age")
    assert [(e.program_id, e.status, e.reason) for e in fx.enrollments] == [expected]
    assert ("pricing" in the_lead.enrollments) is entered
    assert the_lead.last_activity_at == T0  # the lead's record is updated either way


def test_an_old_event_still_moves_the_stage_but_starts_no_stage_program() -> None:
    to_sql = {"b2b": model_score(120, crossed=[("mql", "up"), ("sql", "up")])}
    the_lead = lead()
    fx = Decider([HANDOFF], NO_LIMITS, stage_model="b2b").on_event(
        the_lead, event("web.form_submitted", form_id="f", form_type="demo_request"), to_sql,
        event_time=T0, now=T0 + 30 * D)
    assert the_lead.stage == "sql" and [c.to_stage for c in fx.stage_changes] == ["sql"]
    assert [(e.program_id, e.status) for e in fx.enrollments] == [("handoff", "skipped")]
    assert fx.commands == []
    fresh = lead()
    fx = Decider([HANDOFF], NO_LIMITS, stage_model="b2b").on_event(
        fresh, event("web.form_submitted", form_id="f", form_type="demo_request"), to_sql,
        event_time=T0, now=T0 + 60)
    assert [(e.program_id, e.status) for e in fx.enrollments] == [("handoff", "entered"),
                                                                  ("handoff", "completed")]
    assert [c.channel for c in fx.commands] == ["crm_task"]


def test_the_api_and_timers_are_not_events_and_are_never_too_old() -> None:
    program = Program(id="manual", version=1, name="m", trigger=Trigger("manual"),
                      steps=(Step("s", "tag", tag="t"),), max_event_age_seconds=60)
    fx = Decider([program], NO_LIMITS).enroll(lead(), "manual", T0 + 365 * D)
    assert [e.status for e in fx.enrollments][:1] == ["entered"]
