"""Publishing accepted events to Kafka.

`Publisher` is the port; `KafkaPublisher` the aiokafka adapter; `FakePublisher` a real-behaving
fake for unit tests. A request is acknowledged only when every record of it is acknowledged by
the broker; a broker that is down or slow becomes `PublishUnavailable` (HTTP 503)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_producer
from services.ingest.domain.intake import Record

log = logging.getLogger(__name__)


class PublishUnavailable(Exception):
    """Kafka did not acknowledge in time (or is not connected): nothing may be reported as
    accepted. Clients retry; `id` + `source` make the retry safe."""


class PublishRefused(Exception):
    """Kafka will never take this record (e.g. too large): retrying cannot help (HTTP 413)."""


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    async def publish(self, records: Sequence[Record]) -> None:
        """Return once the broker acknowledged every record, else raise PublishUnavailable."""

    async def ping(self) -> bool:
        """True when the broker answers a metadata request now."""


class KafkaPublisher:
    """Idempotent acks=all producer; sends of one request are issued together and awaited
    together (linger batches them, and concurrent requests share batches)."""

    def __init__(self, settings: KafkaSettings, *, topic: str, timeout: float) -> None:
        self._settings = settings
        self._topic = topic
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    def start(self) -> None:
        """Connect in the background, retrying with backoff: the HTTP server starts (and
        answers 503 / not-ready) even while the broker is unreachable - no crash loop."""
        self._connector = asyncio.create_task(self._connect(), name="kafka-connect")
        self._connector.add_done_callback(_log_failure)

    async def _connect(self) -> None:
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.5, max=10),
            retry=retry_if_exception_type(KafkaError),
            before_sleep=lambda state: log.warning(
                "kafka not reachable, retrying", extra={"attempt": state.attempt_number}),
        )
        async for attempt in retrying:
            with attempt:
                producer = make_producer(self._settings, client_id="nurture-ingest")
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
        log.info("connected to kafka", extra={"topic": self._topic})

    async def close(self) -> None:
        if self._connector and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._producer is not None:
            await self._producer.stop()  # flushes what is still buffered
            self._producer = None

    async def publish(self, records: Sequence[Record]) -> None:
        producer = self._producer
        if producer is None:
            raise PublishUnavailable("not connected to Kafka yet")
        try:
            await asyncio.wait_for(self._send_all(producer, records), self._timeout)
        except MessageSizeTooLargeError as exc:
            raise PublishRefused("an event is larger than the broker accepts") from exc
        except (TimeoutError, KafkaError) as exc:
            raise PublishUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    async def _send_all(self, producer: AIOKafkaProducer, records: Sequence[Record]) -> None:
        futures = [
            await producer.send(r.topic or self._topic, r.value, key=r.key, headers=r.headers)
            for r in records
        ]
        await asyncio.gather(*futures)

    async def ping(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            return bool(await asyncio.wait_for(producer.client.fetch_all_metadata(), 2.0))
        except (TimeoutError, KafkaError):
            return False


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("cannot connect to Kafka; the service stays not-ready",
                  exc_info=task.exception())


class FakePublisher:
    """In-memory publisher for unit tests: `.published` holds what was acknowledged; set
    `.available = False` to simulate a broker outage."""

    def __init__(self) -> None:
        self.published: list[Record] = []
        self.available = True

    @property
    def connected(self) -> bool:
        return self.available

    async def publish(self, records: Sequence[Record]) -> None:
        if not self.available:
            raise PublishUnavailable("fake broker is down")
        self.published.extend(records)

    async def ping(self) -> bool:
        return self.available
