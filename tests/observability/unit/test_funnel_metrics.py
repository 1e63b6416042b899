"""The orchestrator's marketing metrics and decision log, fed by real decisions of the Decider:
conversions split by nurtured, time in stage, sales cycle, messages and held reasons,
engagement by program and step — and log lines that carry a lead hash, never the lead id."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import CollectorRegistry

from services.common.observability.logging import lead_hash
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.gauges import Counts
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import EventMatch, Program, Step, Trigger
from services.orchestrator.metrics import OrchestratorMetrics, held_reason

DAY = 86400.0
LEAD = "ada@example.com"  # lead ids are often emails: exactly what must not reach a log line
WELCOME = Program(id="welcome", version=1, name="Welcome", trigger=Trigger("manual"),
                  steps=(Step("hello", "send", channel="email", template="welcome-hello"),))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def decider() -> Decider:
    return Decider([WELCOME], ContactPolicy(caps=(), quiet_hours=None))


def nurtured_customer(decider: Decider, t0: float) -> tuple[Lead, Effects]:
    """A lead created at t0, an MQL at t0 + 1 day, enrolled, a customer at t0 + 31 days."""
    lead = Lead(LEAD, stage="lead", stage_entered_at=t0, created_at=t0,
                profile={"email": LEAD})
    fx = Effects()
    decider.set_stage(lead, "mql", "score", t0 + DAY, fx)
    more = decider.enroll(lead, "welcome", t0 + DAY, cause="api")
    decider.set_stage(lead, "customer", "deal won", t0 + 31 * DAY, more)
    for name in ("stage_changes", "notes", "enrollments", "commands"):
        getattr(fx, name).extend(getattr(more, name))
    return lead, fx


def test_a_nurtured_conversion_is_counted_with_its_times(decider: Decider) -> None:
    registry = new_registry()
    metrics = OrchestratorMetrics(registry, decider.programs)
    _, fx = nurtured_customer(decider, 1_700_000_000.0)
    metrics.observe([(LEAD, fx)])
    assert value(registry, "nurture_orchestrator_conversions_total",
                 to_stage="mql", nurtured="false") == 1  # not yet enrolled when it became MQL
    assert value(registry, "nurture_orchestrator_conversions_total",
                 to_stage="customer", nurtured="true") == 1
    assert value(registry, "nurture_orchestrator_time_in_stage_seconds_sum", stage="lead") == DAY
    assert value(registry, "nurture_orchestrator_time_in_stage_seconds_sum",
                 stage="mql") == 30 * DAY
    assert value(registry, "nurture_orchestrator_sales_cycle_seconds_sum",
                 nurtured="true") == 31 * DAY
    assert value(registry, "nurture_orchestrator_stage_transitions_total",
                 from_stage="mql", to_stage="customer") == 1
    assert value(registry, "nurture_orchestrator_enrollments_total",
                 program="welcome", status="entered", reason="trigger") == 1
    assert value(registry, "nurture_orchestrator_messages_total", program="welcome",
                 step="hello", channel="email", outcome="sent", reason="none") == 1


def test_an_enrollment_skipped_for_an_old_event_is_counted_with_a_bounded_reason() -> None:
    program = Program(id="on-view", version=1, name="On view",
                      trigger=Trigger("event", event=EventMatch(frozenset({"web.page_viewed"}))),
                      steps=(Step("hello", "send", channel="email", template="hello"),),
                      max_event_age_seconds=DAY)
    registry = new_registry()
    decider = Decider([program], ContactPolicy(caps=(), quiet_hours=None))
    metrics = OrchestratorMetrics(registry, decider.programs)
    t0 = 1_700_000_000.0
    for n, age in enumerate((60.0, 3 * DAY, 40 * DAY)):
        lead = Lead(f"lead-{n}", stage="lead", profile={"email": "a@b.example"})
        fx = decider.on_event(lead, {"type": "web.page_viewed", "data": {"url": "u"}}, {},
                              event_time=t0, now=t0 + age)
        metrics.observe([(lead.lead_id, fx)])
    assert value(registry, "nurture_orchestrator_enrollments_total",
                 program="on-view", status="entered", reason="trigger") == 1
    assert value(registry, "nurture_orchestrator_enrollments_total", program="on-view",
                 status="skipped", reason="event older than max_event_age") == 2


def test_each_decision_logs_one_line_with_a_lead_hash_and_no_lead_id(
        decider: Decider, caplog: pytest.LogCaptureFixture) -> None:
    metrics = OrchestratorMetrics(new_registry(), decider.programs)
    _, fx = nurtured_customer(decider, 1_700_000_000.0)
    fx.event_id = "evt-42"
    with caplog.at_level(logging.INFO, logger="services.orchestrator.metrics"):
        metrics.observe([(LEAD, fx)])
    lines = [r for r in caplog.records if r.name == "services.orchestrator.metrics"]
    assert [r.getMessage() for r in lines] == [
        "stage changed", "stage changed", "enrollment entered", "enrollment completed",
        "message scheduled"]
    scheduled = lines[-1].__dict__
    assert (scheduled["program"], scheduled["step"], scheduled["channel"]) == \
        ("welcome", "hello", "email")
    for record in lines:
        fields = record.__dict__
        assert fields["lead_hash"] == lead_hash(LEAD)
        assert fields["event_id"] == "evt-42"
        assert LEAD not in json.dumps({k: v for k, v in fields.items() if k != "args"},
                                      default=str)


def test_a_held_message_counts_its_reason(decider: Decider) -> None:
    registry = new_registry()
    metrics = OrchestratorMetrics(registry, decider.programs)
    lead = Lead("lead-7", stage="lead", stage_entered_at=0.0, created_at=0.0,
                suppressed={"email": "unsubscribed"}, profile={"email": "x@example.com"})
    fx = decider.enroll(lead, "welcome", 100.0, cause="api")
    metrics.observe([("lead-7", fx)])
    assert value(registry, "nurture_orchestrator_messages_total", program="welcome",
                 step="hello", channel="email", outcome="dropped", reason="suppressed") == 1


@pytest.mark.parametrize(("reason", "label"), [
    (None, "none"), ("quiet hours", "quiet hours"), ("frequency cap", "frequency cap"),
    ("suppressed: unsubscribed", "suppressed"), ("expired: quiet hours", "expired"),
    ("no consent for sms", "no consent for sms")])
def test_held_reasons_are_a_bounded_set(reason: str | None, label: str) -> None:
    assert held_reason(reason) == label


def test_engagement_is_counted_by_known_program_and_step_only(decider: Decider) -> None:
    registry = new_registry()
    metrics = OrchestratorMetrics(registry, decider.programs)
    data = {"message_id": "m1", "program_id": "welcome", "step_id": "hello"}
    metrics.observe_events([
        {"type": "message.sent", "data": {**data, "channel": "email"}},
        {"type": "email.opened", "data": data},
        {"type": "email.clicked", "data": data},
        {"type": "email.opened", "data": {**data, "program_id": "made-up-by-a-client"}},
        {"type": "message.failed", "data": {**data, "channel": "email", "retryable": True}},
        {"type": "web.page_viewed", "data": {"url": "https://x.io"}},
    ])

    def events(event: str, program: str = "welcome", step: str = "hello") -> float:
        return value(registry, "nurture_orchestrator_message_events_total", program=program,
                     step=step, channel="email", event=event)

    assert (events("sent"), events("opened"), events("clicked"), events("retried")) == \
        (1, 1, 1, 1)
    assert events("opened", "other", "other") == 1
    assert events("failed") == 0


def test_lead_hash_is_stable_and_not_the_id() -> None:
    assert lead_hash(LEAD) == lead_hash(LEAD)
    assert lead_hash(LEAD) != lead_hash("bob@example.com")
    assert LEAD not in lead_hash(LEAD) and len(lead_hash(LEAD)) == 16


def test_gauges_show_every_stage_and_program_with_zeros(decider: Decider) -> None:
    registry = new_registry()
    metrics = OrchestratorMetrics(registry, decider.programs)
    metrics.refresh(Counts(leads={("mql", True): 3, ("customer", False): 2},
                           active={"retired-program": 4}, timers_pending=7, timers_overdue=1,
                           oldest_overdue_seconds=42.0), (5, 1))
    assert value(registry, "nurture_orchestrator_leads", stage="mql", nurtured="true") == 3
    assert value(registry, "nurture_orchestrator_leads", stage="customer", nurtured="false") == 2
    assert registry.get_sample_value("nurture_orchestrator_leads",
                                     {"stage": "sql", "nurtured": "true"}) == 0
    assert registry.get_sample_value("nurture_orchestrator_active_enrollments",
                                     {"program": "welcome"}) == 0
    assert value(registry, "nurture_orchestrator_active_enrollments", program="other") == 4
    assert (value(registry, "nurture_orchestrator_timers_pending"),
            value(registry, "nurture_orchestrator_timer_oldest_overdue_seconds"),
            value(registry, "nurture_outbox_pending_records"),
            value(registry, "nurture_outbox_parked_records")) == (7, 42, 5, 1)
