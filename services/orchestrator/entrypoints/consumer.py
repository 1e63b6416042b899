"""The orchestrator's background workers: the scored-event consumer (the shared loop
`services/common/kafka/loops.py` `consume`, bound to the handler), the timer poller, the outbox
relay (woken by the unit of work), retention, gauges and consumer lag."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.common.kafka.loops import consume, loop
from services.orchestrator.bootstrap import Orchestrator

GAUGE_SECONDS = 15.0  # gauges recounted from PostgreSQL, lag from the consumer


async def run_workers(orch: Orchestrator, stop: asyncio.Event) -> None:
    """Connect to Kafka (waiting out an unreachable broker) and run the loops until `stop`;
    `orch.kafka_ready` says whether they are connected."""
    settings, handlers = orch.settings, orch.handlers
    consumer, producer = orch.consumer(), orch.producer()
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10),
                                       retry=retry_if_exception_type(KafkaError)):
        with attempt:
            await producer.start()
            await consumer.start()
    orch.kafka_ready = True
    pruner = orch.pruner()

    async def prune() -> int:  # 0: the loop waits its interval after a round
        await handlers.prune(pruner)
        return 0

    try:
        await asyncio.gather(
            consume(handlers.handle_scored_events, consumer, stop),
            loop(handlers.fire_timers, stop, settings.timer_poll_seconds, what="timers"),
            loop(lambda: orch.relay_outbox(producer), stop, settings.relay_idle_seconds,
                 wake=orch.outbox_ready, what="outbox"),
            loop(prune, stop, settings.prune_interval_seconds, what="prune"),
            loop(orch.refresh_gauges, stop, GAUGE_SECONDS, what="gauges"),
            loop(lambda: orch.metrics.lag.update(consumer, orch.group_id), stop, GAUGE_SECONDS,
                 what="lag"))
    finally:
        orch.kafka_ready = False  # not ready any more, whatever ended the workers
        await consumer.stop()
        await producer.stop()
