"""Running the Dispatcher: connect to Kafka (waiting out an unreachable broker), then the
command consumer, one delivery loop per channel, the recovery loop, the outbox relay and the
pruning of old deliveries, until `stop`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeAlias

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.common.config.settings import KafkaSettings
from services.common.db.retention import Pruner
from services.common.kafka.clients import make_consumer, make_producer
from services.common.kafka.loops import consume, loop
from services.dispatch.adapters import retention
from services.dispatch.domain.command import CHANNELS
from services.dispatch.feedback import record_suppressions
from services.dispatch.runtime import Dispatcher
from services.dispatch.settings import DispatchSettings

log = logging.getLogger(__name__)
GAUGE_SECONDS = 15.0  # outbox backlog recounted, consumer lag refreshed
Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def run_workers(dispatcher: Dispatcher, settings: DispatchSettings, kafka: KafkaSettings,
                      stop: asyncio.Event, ready: Callable[[], None]) -> None:
    """Connect, call `ready()`, and run every loop until `stop`."""
    group = f"{kafka.topic_prefix}{settings.group_id}"
    consumer = make_consumer(kafka, dispatcher.topics.dispatch, client_id="nurture-dispatch",
                             group_id=group)
    events = make_consumer(kafka, dispatcher.topics.events, client_id="nurture-dispatch",
                           group_id=f"{group}-suppressions") if settings.follow_suppressions \
        else None
    producer = make_producer(kafka, client_id="nurture-dispatch")
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10),
                                       retry=retry_if_exception_type(KafkaError)):
        with attempt:
            await producer.start()
            await consumer.start()
            if events is not None:
                await events.start()
    ready()

    async def suppressions(records: list[Record]) -> int:
        return await record_suppressions(dispatcher.engine, records, now=dispatcher.clock.now())

    pruner = Pruner(dispatcher.engine, retention.RULES, timedelta(days=settings.retention_days),
                    dispatcher.metrics.pruned, dedupes="nurture.dispatch.v1")

    async def prune() -> int:  # 0: the loop waits its interval after a round
        await pruner.prune(now=dispatcher.clock.now())
        return 0

    try:
        await asyncio.gather(
            consume(dispatcher.handle_batch, consumer, stop),
            *([consume(suppressions, events, stop)] if events is not None else []),
            *(loop(functools.partial(dispatcher.deliver_due, channel), stop,
                   settings.poll_seconds, wake=dispatcher.wake[channel],
                   what=f"deliver-{channel}")
              for channel in CHANNELS),
            loop(dispatcher.recover_stale, stop, settings.recovery_poll_seconds, what="recover"),
            loop(lambda: dispatcher.relay_outbox(producer), stop, settings.relay_idle_seconds,
                 wake=dispatcher.outbox_ready, what="outbox"),
            loop(dispatcher.refresh_gauges, stop, GAUGE_SECONDS, what="gauges"),
            loop(prune, stop, settings.prune_interval_seconds, what="prune"),
            loop(lambda: dispatcher.metrics.lag.update(consumer, group), stop, GAUGE_SECONDS,
                 what="lag"))
    finally:
        await consumer.stop()
        if events is not None:
            await events.stop()
        await producer.stop()
