"""What a fault run watches while it runs: the scored-events, dispatch and dead-letter topics
(read from the beginning, outside any consumer group, so the services' own offsets are not
touched) and the orchestrator's processed-event marks in PostgreSQL. Every observation keeps
the monotonic time it was first seen: the recovery time of a fault is read from them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg  # type: ignore[import-untyped]
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from services.common.kafka.topics import Topics

log = logging.getLogger(__name__)


@dataclass
class Observer:
    bootstrap: str
    database_url: str  # postgresql+asyncpg://...
    schema: str = "nurture"
    scored: dict[str, float] = field(default_factory=dict)  # event key -> first seen
    scored_records: Counter[str] = field(default_factory=Counter)
    scored_times: list[float] = field(default_factory=list)  # every record, repeats included
    planned: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (lead, step)
    dead_letters: Counter[str] = field(default_factory=Counter)  # "consumer: reason" -> count
    processed: dict[str, float] = field(default_factory=dict)
    processed_times: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(self._topics(), self._database())

    def stop(self) -> None:
        self._stop.set()

    async def _topics(self) -> None:
        topics = Topics()
        consumer = AIOKafkaConsumer(
            topics.scored_events, topics.dispatch, topics.deadletter,
            bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest",
            enable_auto_commit=False, retry_backoff_ms=500)
        await consumer.start()
        try:
            while not self._stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=500)
                except KafkaError as exc:  # the broker is being stopped: keep trying
                    log.debug("observer poll failed: %s", exc)
                    await asyncio.sleep(0.5)
                    continue
                now = time.monotonic()
                for tp, records in batch.items():
                    for record in records:
                        self._seen(tp.topic, topics, record.value, record.headers, now)
        finally:
            with contextlib.suppress(KafkaError):
                await consumer.stop()

    def _seen(self, topic: str, topics: Topics, value: bytes | None,
              headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
              now: float) -> None:
        if topic == topics.deadletter:
            h = dict(headers)
            reason = h.get("nurture-error", b"?").decode(errors="replace")
            self.dead_letters[f"{h.get('nurture-consumer', b'?').decode()}: {reason}"] += 1
            return
        try:
            doc = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return
        if topic == topics.dispatch and isinstance(doc, dict):
            self.planned.setdefault(str(doc.get("message_id")),
                                    (str(doc.get("lead_id")), str(doc.get("step_id"))))
        elif topic == topics.scored_events and isinstance(doc, dict):
            event = doc.get("event") or {}
            key = f"{event.get('source')}\x1f{event.get('id')}"
            self.scored.setdefault(key, now)
            self.scored_records[key] += 1
            self.scored_times.append(now)

    async def _database(self) -> None:
        dsn = self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        while not self._stop.is_set():
            try:
                conn = await asyncpg.connect(dsn, timeout=5)
                try:
                    rows = await conn.fetch(
                        f"SELECT event_key FROM {self.schema}.processed_events")  # noqa: S608
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.debug("observer query failed: %s", exc)
            else:
                now = time.monotonic()
                for row in rows:
                    if row["event_key"] not in self.processed:
                        self.processed[row["event_key"]] = now
                        self.processed_times.append(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)


@dataclass(frozen=True, slots=True)
class Backlog:
    """Work the services still have: dispatch deliveries not final (`pending`, incl. claimed
    and leased, or `sending`), planned messages dispatch has no row for yet (the command not
    consumed), unpublished outbox rows of the orchestrator and of dispatch, and orchestrator
    timers due by its (controllable) clock. All zero: nothing more will be sent (`timers`, all
    the orchestrator's timers, due or not, is what later days still hold)."""

    unfinished: int
    unseen: int
    outbox: int
    due_timers: int
    timers: int = 0

    @property
    def idle(self) -> bool:
        return not (self.unfinished or self.unseen or self.outbox or self.due_timers)


async def backlog(database_url: str, planned: Iterable[str], *, orchestrator: str = "nurture",
                  dispatch: str = "nurture_dispatch") -> Backlog | None:
    """The services' backlog, read from their tables; None when the database cannot be read."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    o, d = orchestrator, dispatch
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            unfinished = await conn.fetchval(
                f"SELECT count(*) FROM {d}.deliveries "  # noqa: S608 - our schema names
                "WHERE status IN ('pending', 'sending')")
            known = await conn.fetchval(
                f"SELECT count(*) FROM {d}.deliveries "  # noqa: S608
                "WHERE message_id = ANY($1::text[])", ids := sorted(set(planned)))
            outbox = await conn.fetchval(
                f"SELECT (SELECT count(*) FROM {o}.outbox WHERE parked_reason IS NULL) "  # noqa: S608
                f"+ (SELECT count(*) FROM {d}.outbox WHERE parked_reason IS NULL)")
            due, timers = await conn.fetchrow(
                f"SELECT count(*) FILTER (WHERE due_at <= now() + make_interval("  # noqa: S608
                f"secs => (SELECT offset_seconds FROM {o}.clock WHERE id = 1))), count(*) "
                f"FROM {o}.timers")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.debug("backlog query failed: %s", exc)
        return None
    return Backlog(int(unfinished), len(ids) - int(known), int(outbox), int(due), int(timers))
