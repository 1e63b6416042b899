"""The optimizations made for the benchmarks change speed only: the fast `Lead.to_dict` gives
exactly what `dataclasses.asdict` gave, on leads the real Decider built from the bench workload
(enrollments, contacts, timers' bookkeeping, scores, profiles), and round-trips."""

from __future__ import annotations

from dataclasses import asdict

from bench.backtest import scored_lines
from bench.core import events
from bench.orchestrator import decider
from schemas.records import ScoredEvent
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.simulate import Simulation
from services.scoring.service_layer.handlers import event_time


def test_fast_lead_to_dict_is_asdict() -> None:
    sim = Simulation(decider())
    for line in scored_lines(events(1500, 200, seed=9, hot_share=0.1)):
        scored = ScoredEvent.from_bytes(line)
        sim.feed(scored.event, scored.score.models, event_time(scored.event, 0))
    sim.run_until(sim.clock + 30 * 86400)
    leads = list(sim.leads.values())
    assert sum(len(lead.enrollments) for lead in leads) > 100  # the rich case is covered
    assert sum(len(lead.contacts) for lead in leads) > 0
    for lead in leads:
        doc = lead.to_dict()
        assert doc == asdict(lead)
        assert Lead.from_dict(doc) == lead
        doc["profile"]["changed"] = 1  # a copy: the lead is not touched through it
        assert "changed" not in lead.profile
