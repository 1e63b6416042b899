"""`serve`'s background work, bound to the handlers: connect to Kafka (waiting out an
unreachable broker), then the two consumers (commands of `nurture.dispatch.v1` ->
`record_commands`; suppressions and erasures of `nurture.events.v1` -> `apply_suppressions`)
on the shared consumer loop, and the timed loops: one delivery loop per channel
(`deliver_due`), the recovery of interrupted attempts (`recover_stale`), the outbox relay, the
pruning of old deliveries and the gauges, until `stop`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from schemas.vocabulary import CHANNELS
from services.common.db import outbox
from services.common.kafka.loops import consume, loop
from services.dispatch.adapters import tables
from services.dispatch.adapters.events import erased_leads, merged_leads, suppression_changes

if TYPE_CHECKING:
    from services.dispatch.bootstrap import KafkaClients, Service

GAUGE_SECONDS = 15.0  # outbox backlog recounted, consumer lag refreshed
Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def serve(service: Service, stop: asyncio.Event, ready: Callable[[], None]) -> None:
    """Connect, call `ready()`, and run every consumer and loop until `stop`."""
    clients = service.connect()
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10),
                                       retry=retry_if_exception_type(KafkaError)):
        with attempt:
            await clients.producer.start()
            await clients.commands.start()
            if clients.events is not None:
                await clients.events.start()
    ready()
    try:
        await asyncio.gather(*consumers(service, clients, stop), *loops(service, clients, stop))
    finally:
        await clients.commands.stop()
        if clients.events is not None:
            await clients.events.stop()
        await clients.producer.stop()


def consumers(service: Service, clients: KafkaClients,
              stop: asyncio.Event) -> list[Awaitable[None]]:
    """The commands consumer, and the events consumer when suppressions are followed."""
    handlers = service.handlers

    async def on_events(records: Sequence[Record]) -> int:
        now = service.clock.now()
        return await handlers.apply_suppressions(suppression_changes(records, now=now),
                                                 erased_leads(records), merged_leads(records))

    found: list[Awaitable[None]] = [consume(handlers.record_commands, clients.commands, stop)]
    if clients.events is not None:
        found.append(consume(on_events, clients.events, stop))
    return found


def loops(service: Service, clients: KafkaClients,
          stop: asyncio.Event) -> list[Awaitable[None]]:
    """The timed loops (woken early by their events where they have one)."""
    handlers, settings, metrics = service.handlers, service.settings, service.metrics

    async def relay() -> int:
        published = await outbox.relay(service.engine, tables.outbox, clients.producer, 500)
        metrics.published.inc(published)
        return published

    async def gauges() -> int:  # 0: the loop waits its interval after a round
        metrics.outbox.set(await outbox.backlog(service.engine, tables.outbox))
        return 0

    async def prune() -> int:
        await service.pruner.prune(now=service.clock.now())
        return 0

    return [
        *(loop(functools.partial(handlers.deliver_due, channel), stop, settings.poll_seconds,
               wake=handlers.wake[channel], what=f"deliver-{channel}")
          for channel in CHANNELS),
        loop(handlers.recover_stale, stop, settings.recovery_poll_seconds, what="recover"),
        loop(relay, stop, settings.relay_idle_seconds, wake=service.outbox_ready,
             what="outbox"),
        loop(gauges, stop, GAUGE_SECONDS, what="gauges"),
        loop(prune, stop, settings.prune_interval_seconds, what="prune"),
        loop(lambda: metrics.lag.update(clients.commands, clients.group), stop, GAUGE_SECONDS,
             what="lag")]
