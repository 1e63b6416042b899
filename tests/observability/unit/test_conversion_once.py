"""Conversion ratios count leads, not stage entries: a lead counts once per funnel stage, the
first time it gets there (a skipped stage counts as reached), and not again when it is recycled
and comes back. The furthest stage is part of the lead's saved document."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.observability.metrics import new_registry
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.metrics import OrchestratorMetrics

T0 = 1_700_000_000.0


def conversions(registry: CollectorRegistry, stage: str) -> float:
    return sum(registry.get_sample_value("nurture_orchestrator_conversions_total",
                                         {"to_stage": stage, "nurtured": n}) or 0.0
               for n in ("true", "false"))


def walk(lead: Lead, stages: list[str]) -> tuple[CollectorRegistry, Lead]:
    decider = Decider([], ContactPolicy(caps=(), quiet_hours=None))
    registry = new_registry()
    metrics = OrchestratorMetrics(registry, {})
    for n, stage in enumerate(stages):
        fx = Effects()
        decider.set_stage(lead, stage, "test", T0 + n, fx)
        metrics.observe([(lead.lead_id, fx)])
        lead = Lead.from_dict(lead.to_dict())  # saved and loaded between events
    return registry, lead


def test_a_recycled_lead_coming_back_is_not_a_second_conversion() -> None:
    lead = Lead("l1", stage="lead", stage_entered_at=T0, created_at=T0)
    registry, lead = walk(lead, ["mql", "recycled", "mql", "recycled", "mql", "sql"])
    assert conversions(registry, "mql") == 1
    assert conversions(registry, "sql") == 1
    assert lead.furthest == "sql"
    transitions = registry.get_sample_value("nurture_orchestrator_stage_transitions_total",
                                            {"from_stage": "recycled", "to_stage": "mql"})
    assert transitions == 2  # the transitions still show every move


def test_a_skipped_stage_counts_as_reached() -> None:
    registry, _ = walk(Lead("l2", stage="lead", stage_entered_at=T0, created_at=T0),
                       ["opportunity", "customer"])
    assert [conversions(registry, s) for s in ("mql", "sql", "opportunity", "customer")] == \
        [1, 1, 1, 1]


def test_a_new_subscriber_reaches_the_funnel_once() -> None:
    decider = Decider([], ContactPolicy(caps=(), quiet_hours=None))
    fx = Effects()
    lead = decider.new_lead("l3", "web.form_submitted", {"form_type": "newsletter"}, T0, fx)
    assert (lead.stage, lead.furthest, fx.stage_changes[0].reached) == ("subscriber", None, ())
    registry, lead = walk(lead, ["mql", "cold", "lead", "mql"])
    assert conversions(registry, "mql") == 1
    assert lead.furthest == "mql"


def test_a_lead_saved_before_the_field_existed_starts_from_its_stage() -> None:
    doc = Lead("l4", stage="sql", stage_entered_at=T0, created_at=T0).to_dict()
    del doc["furthest"]
    registry, _ = walk(Lead.from_dict(doc), ["recycled", "mql", "opportunity"])
    assert [conversions(registry, s) for s in ("mql", "sql", "opportunity")] == [0, 0, 1]
