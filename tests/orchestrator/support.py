"""Building the orchestrator in tests: on a test's own engine (its schema), without Kafka."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.orchestrator.bootstrap import Orchestrator, bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Lead
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.settings import OrchestratorSettings

UNUSED_URL = "postgresql+asyncpg://unused@localhost/unused"  # the engine is the test's


class Choking(Decider):
    """Changes the lead it works on, then raises, for events of type `web.choke`."""

    def on_event(self, lead: Lead, event: Any, score: Any, *, event_time: float,
                 now: float, scored_at: float | None = None) -> Effects:
        fx = super().on_event(lead, event, score, event_time=event_time, now=now,
                              scored_at=scored_at)
        if event.get("type") == "web.choke":
            lead.tags.append("half-decided")
            raise KeyError("company_size")
        return fx


def choking(decider: Decider) -> Decider:
    """The same decisions with a bug: they raise on events of type `web.choke`."""
    return Choking(list(decider.programs.values()), decider.policy, decider.stage_model)


def orchestrator(engine: AsyncEngine, decider: Decider, *, topics: Topics | None = None,
                 metrics: OrchestratorMetrics | None = None,
                 registry: CollectorRegistry | None = None) -> Orchestrator:
    settings = OrchestratorSettings(DATABASE_URL=UNUSED_URL)  # type: ignore[call-arg]
    return bootstrap(settings, KafkaSettings(), decider, engine=engine, topics=topics or Topics(),
                     metrics=metrics, registry=registry, run_workers=False)
