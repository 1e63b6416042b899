"""`nurture-scoring worker`: read what the worker must know before it starts, bootstrap, serve
the probes, create the changelog topic and run the faust worker until it is stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust

from services.common.config.settings import ClockSettings, KafkaSettings
from services.common.kafka.topics import Topics, wait_for_partitions
from services.scoring.adapters.faust_app import app_id, committed, ensure_changelog
from services.scoring.bootstrap import bootstrap
from services.scoring.domain.model import ScoringModel
from services.scoring.entrypoints.probes import serve
from services.scoring.settings import ScoringSettings


def run_worker(settings: ScoringSettings, kafka: KafkaSettings,
               models: Sequence[ScoringModel], *, log_level: str,
               clock: ClockSettings | None = None) -> int:
    partitions = asyncio.run(wait_for_partitions(kafka, Topics(kafka.topic_prefix).events))
    # before this process's faust can commit anything (the gap guard, adapters/faust_app.py)
    committed_at_startup = asyncio.run(committed(kafka, app_id(settings, kafka)))
    scoring = bootstrap(settings, kafka, models, partitions=partitions,
                        committed_at_startup=committed_at_startup, clock=clock)
    if settings.metrics_port:  # /metrics, and /livez and /healthz for the probes
        serve(settings.metrics_port, scoring.registry, scoring.health)
    asyncio.run(ensure_changelog(scoring.app, kafka, partitions=partitions,
                                 replication_factor=settings.replication_factor))
    runner = faust.Worker(scoring.app, scoring.heartbeat, loglevel=log_level,
                          override_logging=False, quiet=True)
    runner.execute_from_commandline()
    return 0
