"""The orchestrator's composition root: `bootstrap()` is the only place that builds the database
engine, the Kafka clients, the unit of work factory and the handlers. `__main__` calls it and
runs the result; tests call it with fakes as overrides (an engine on their own schema, an
in-memory unit of work, their own metrics registry)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config.settings import KafkaSettings
from services.common.db import outbox
from services.common.db.engine import make_engine
from services.common.db.retention import Pruner
from services.common.kafka.clients import make_consumer, make_relay_producer
from services.common.kafka.topics import Topics
from services.common.observability.metrics import service_registry
from services.orchestrator.adapters import gauges, retention, tables
from services.orchestrator.adapters.queries import PgViews
from services.orchestrator.adapters.records import CONSUMER
from services.orchestrator.adapters.unit_of_work import PgUnitOfWork
from services.orchestrator.domain.decide import Decider
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.service_layer.handlers import Handlers
from services.orchestrator.service_layer.unit_of_work import UnitOfWork, Views
from services.orchestrator.settings import OrchestratorSettings


@dataclass
class Orchestrator:
    """The orchestrator, built: the handlers the entrypoints call, and the clients the
    background workers run on (Kafka clients are made inside the running event loop)."""

    settings: OrchestratorSettings
    kafka: KafkaSettings
    decider: Decider
    registry: CollectorRegistry
    metrics: OrchestratorMetrics
    engine: AsyncEngine
    topics: Topics
    outbox_ready: asyncio.Event  # set by the unit of work after a commit with outbox rows
    handlers: Handlers
    views: Views
    run_workers: bool = True
    kafka_ready: bool = False

    @property
    def group_id(self) -> str:
        return f"{self.kafka.topic_prefix}{self.settings.group_id}"

    def consumer(self) -> AIOKafkaConsumer:
        group = self.group_id  # (a name: tests/deploy/kafka_access.py reads the code's groups)
        return make_consumer(self.kafka, self.topics.scored_events, client_id=CONSUMER,
                             group_id=group)

    def producer(self) -> AIOKafkaProducer:
        return make_relay_producer(self.kafka, client_id=CONSUMER)

    def pruner(self) -> Pruner:
        return Pruner(self.engine, retention.RULES,
                      timedelta(days=self.settings.retention_days), self.metrics.pruned,
                      dedupes="nurture.scored-events.v1")

    async def relay_outbox(self, producer: AIOKafkaProducer, limit: int = 500) -> int:
        """Publish pending outbox rows; they are deleted once Kafka acknowledged them."""
        published = await outbox.relay(self.engine, tables.outbox, producer, limit)
        self.metrics.published.inc(published)
        return published

    async def refresh_gauges(self) -> int:
        return await gauges.refresh(self.engine, self.metrics)

    async def close(self) -> None:
        await self.engine.dispose()


def build_decider(programs: Sequence[str], policy: str, stage_model: str) -> Decider:
    """The decisions, from the program files and the contact policy (ConfigFileError if they
    are not valid)."""
    from services.orchestrator.adapters.program_files import load_policy, load_programs

    return Decider(load_programs(programs), load_policy(policy), stage_model=stage_model)


def bootstrap(settings: OrchestratorSettings, kafka: KafkaSettings, decider: Decider, *,
              registry: CollectorRegistry | None = None,
              metrics: OrchestratorMetrics | None = None, engine: AsyncEngine | None = None,
              topics: Topics | None = None, uow: Callable[[], UnitOfWork] | None = None,
              run_workers: bool = True) -> Orchestrator:
    """Build the orchestrator. Overrides: `registry` / `metrics`, `engine` (e.g. on a test's
    schema), `topics`, `uow` (a unit of work factory, e.g. in memory), and `run_workers=False`
    for the API alone (no Kafka)."""
    registry = registry or service_registry()
    metrics = metrics or OrchestratorMetrics(registry, decider.programs)
    engine = engine or make_engine(settings.database_url, schema=settings.db_schema)
    topics = topics or Topics(kafka.topic_prefix)
    ready = asyncio.Event()
    factory = uow or (lambda: PgUnitOfWork(engine, topics, ready))
    handlers = Handlers(factory, decider, topics, metrics)
    return Orchestrator(settings, kafka, decider, registry, metrics, engine, topics, ready,
                        handlers, PgViews(engine), run_workers=run_workers,
                        kafka_ready=not run_workers)
