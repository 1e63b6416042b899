"""Counters whose label values are a known, finite set exist at 0 as soon as a service starts.
A series born at 1 has no increase() for its first event: the first dead letter after every
restart would not fire NurtureDeadLetters, and a first bounce would not count in a rate."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from schemas import EVENT_TYPES
from schemas.vocabulary import CHANNELS
from services.common.observability.metrics import new_registry
from services.dispatch.metrics import DEAD_LETTER_REASONS, DispatchMetrics
from services.ingest.metrics import REASONS, IngestMetrics
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.metrics import ENGAGEMENT, OrchestratorMetrics
from services.scoring.metrics import OUTCOMES, ScoringMetrics

WELCOME = Program(id="welcome", version=1, name="Welcome", trigger=Trigger("manual"),
                  steps=(Step("pause", "wait", seconds=60),
                         Step("hello", "send", channel="email", template="welcome-hello"),
                         Step("text", "send", channel="sms", template="welcome-text")))


def zero(registry: CollectorRegistry, name: str, **labels: str) -> bool:
    return registry.get_sample_value(name, labels) == 0.0


def test_dispatch_starts_with_every_dead_letter_reason_and_channel_at_zero() -> None:
    registry = new_registry()
    DispatchMetrics(registry)
    for reason in DEAD_LETTER_REASONS:
        assert zero(registry, "nurture_dispatch_dead_letters_total", reason=reason), reason
    for channel in CHANNELS:
        assert zero(registry, "nurture_dispatch_retries_total", channel=channel), channel


def test_scoring_starts_with_every_type_and_outcome_at_zero() -> None:
    registry = new_registry()
    ScoringMetrics(registry)
    for etype in (*EVENT_TYPES, "other"):
        for outcome in OUTCOMES:
            assert zero(registry, "nurture_scoring_events_total", type=etype, outcome=outcome)


def test_scoring_counts_an_unknown_type_as_other_and_a_new_outcome_too() -> None:
    registry = new_registry()
    metrics = ScoringMetrics(registry)
    etype = next(iter(EVENT_TYPES))
    for event_type, outcome in ((etype, "scored"), (etype, "scored"), ("web.teleported", "scored"),
                                (etype, "linked")):
        metrics.counted(event_type, outcome)
    count = registry.get_sample_value
    assert count("nurture_scoring_events_total", {"type": etype, "outcome": "scored"}) == 2
    assert count("nurture_scoring_events_total", {"type": "other", "outcome": "scored"}) == 1
    assert count("nurture_scoring_events_total", {"type": etype, "outcome": "linked"}) == 1
    assert count("nurture_scoring_events_total", {"type": "web.teleported",
                                                  "outcome": "scored"}) is None


def test_ingest_starts_with_every_rejection_reason_and_type_at_zero() -> None:
    registry = new_registry()
    IngestMetrics(registry)
    for reason in (*REASONS.values(), "other"):
        assert zero(registry, "nurture_ingest_events_rejected_total", reason=reason), reason
    for etype in EVENT_TYPES:
        assert zero(registry, "nurture_ingest_events_accepted_total", type=etype), etype


@pytest.mark.parametrize("outcome", ["processed", "duplicate", "dead_lettered"])
def test_orchestrator_starts_with_its_outcomes_at_zero(outcome: str) -> None:
    registry = new_registry()
    OrchestratorMetrics(registry, {})
    assert zero(registry, "nurture_orchestrator_events_total", outcome=outcome)
    for stage in ("mql", "sql", "opportunity", "customer"):
        assert zero(registry, "nurture_orchestrator_conversions_total", to_stage=stage,
                    nurtured="true")
    for stage in ("subscriber", "lead"):
        assert zero(registry, "nurture_orchestrator_stage_transitions_total",
                    from_stage="none", to_stage=stage)


def test_orchestrator_starts_with_every_send_step_and_engagement_at_zero() -> None:
    registry = new_registry()
    OrchestratorMetrics(registry, {"welcome": WELCOME})
    for step, channel in (("hello", "email"), ("text", "sms")):
        assert zero(registry, "nurture_orchestrator_messages_total", program="welcome",
                    step=step, channel=channel, outcome="sent", reason="none")
        for kind in ENGAGEMENT:
            assert zero(registry, "nurture_orchestrator_message_events_total",
                        program="welcome", step=step, channel=channel, event=kind)
    assert registry.get_sample_value("nurture_orchestrator_message_events_total", {
        "program": "welcome", "step": "pause", "channel": "email", "event": "sent"}) is None
