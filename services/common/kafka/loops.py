"""The loops every consumer-side service runs: `consume` (a consumer group's batches into a
handler, offsets committed after it) and `loop` (timers, outbox relays, retries)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)


class ConsumedRecord(Protocol):
    """A record as `consume` hands it to a handler (aiokafka's ConsumerRecord is one; tests pass
    plain objects with these attributes)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


async def loop(work: Callable[[], Awaitable[int]], stop: asyncio.Event, idle: float,
               wake: asyncio.Event | None = None, what: str = "") -> None:
    """Run `work` until `stop`; wait `idle` seconds (or until `wake`) when it found nothing.
    A failing round is logged and retried: a database or broker outage is waited out."""
    while not stop.is_set():
        if wake is not None:
            wake.clear()  # before the work: a wake-up during it makes the next wait return
        try:
            done = await work()
        except Exception:  # one failed round must not stop the loop; it is logged
            log.exception("round failed, retrying", extra={"loop": what})
            done = 0
            await asyncio.sleep(min(idle * 10, 5))
        if done:
            continue
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        _, pending = await asyncio.wait(waiters, timeout=idle,
                                        return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()


async def consume(handle: Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[object]],
                  consumer: AIOKafkaConsumer, stop: asyncio.Event, backoff: float = 1.0) -> None:
    """Poll until `stop`, `handle` each batch, commit offsets after it. When a batch cannot be
    recorded (database outage) nothing was committed: the consumer goes back to
    its committed offsets and reads the batch again, after a pause."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        try:
            await handle(records)
        except Exception:  # retried from the committed offsets; the outage is logged
            log.exception("recording a batch failed; reading it again")
            await consumer.seek_to_committed()
            await asyncio.sleep(backoff)
            continue
        try:
            await consumer.commit()
        except KafkaError as exc:  # e.g. a rebalance: redelivered records are no-ops
            log.warning("offset commit failed", extra={"reason": type(exc).__name__})


async def finish(workers: asyncio.Task[object], stop: asyncio.Event, grace: float) -> None:
    """Stop a service's workers: signal `stop`, let them commit and leave their groups within
    `grace` seconds (0: no limit), then cancel what is left (SIGTERM handling)."""
    stop.set()
    try:
        await asyncio.wait_for(workers, grace or None)
    except (TimeoutError, KafkaError):
        workers.cancel()
        with contextlib.suppress(asyncio.CancelledError, KafkaError):
            await workers
