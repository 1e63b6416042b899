"""Building the orchestrator in tests: on a test's own engine (its schema), without Kafka."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.orchestrator.bootstrap import Orchestrator, bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.settings import OrchestratorSettings

UNUSED_URL = "postgresql+asyncpg://unused@localhost/unused"  # the engine is the test's


def orchestrator(engine: AsyncEngine, decider: Decider, *, topics: Topics | None = None,
                 metrics: OrchestratorMetrics | None = None,
                 registry: CollectorRegistry | None = None) -> Orchestrator:
    settings = OrchestratorSettings(DATABASE_URL=UNUSED_URL)  # type: ignore[call-arg]
    return bootstrap(settings, KafkaSettings(), decider, engine=engine, topics=topics or Topics(),
                     metrics=metrics, registry=registry, run_workers=False)
