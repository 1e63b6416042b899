"""The composition root of scoring: the only place that builds the processor (the handler), the
metrics, the probes' state, the heartbeat and the faust app. The worker entrypoint reads what
must be known first (the input topic's partitions, the group's committed offsets) and passes it
in; tests pass their own registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import faust
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.common.clock import SharedClock, clock_of
from services.common.config.settings import ClockSettings, KafkaSettings
from services.common.kafka.topics import Topics
from services.common.observability.metrics import service_registry
from services.scoring.adapters.faust_app import Heartbeat, create_app, watch
from services.scoring.domain.model import ScoringModel
from services.scoring.entrypoints.probes import Health
from services.scoring.metrics import ScoringMetrics
from services.scoring.service_layer.handlers import Processor
from services.scoring.settings import ScoringSettings


@dataclass(frozen=True)
class Scoring:
    """The built worker: the faust app and what runs beside it."""

    settings: ScoringSettings
    kafka: KafkaSettings
    partitions: int
    app: faust.App
    processor: Processor
    metrics: ScoringMetrics
    registry: CollectorRegistry
    health: Health
    heartbeat: Heartbeat


def bootstrap(settings: ScoringSettings, kafka: KafkaSettings, models: Sequence[ScoringModel], *,
              partitions: int, committed_at_startup: Mapping[TopicPartition, int] | None = None,
              registry: CollectorRegistry | None = None,
              clock: ClockSettings | None = None) -> Scoring:
    """Build the worker. `partitions`: the input topic's partition count; `committed_at_startup`:
    the group's committed offsets read before this process's faust could commit anything."""
    topics = Topics(kafka.topic_prefix)
    registry = registry or service_registry()
    metrics = ScoringMetrics(registry)
    health = Health(registry, stuck_after=settings.commit_stuck_seconds)
    processor = Processor(models, topics, recent_ids=settings.recent_ids)
    shared = clock_of(clock) if clock is not None else None
    app = create_app(settings, kafka, processor, metrics, partitions=partitions,
                     committed_at_startup=committed_at_startup,
                     clock=shared if isinstance(shared, SharedClock) else None)
    watch(health, app, topics.events)
    return Scoring(settings, kafka, partitions, app, processor, metrics, registry, health,
                   Heartbeat(health))
