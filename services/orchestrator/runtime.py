"""The orchestrator's moving parts (I/O): the scored-event consumer, the timer poller and the
outbox relay. Each unit of work is one PostgreSQL transaction: lock the leads, call the pure
Decider, write state + processed marks + history + timers + outbox together. Kafka offsets are
committed only after that transaction; outbox rows are deleted only after Kafka acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.vocabulary import event_epoch
from services.common.db import outbox
from services.common.db.outbox import Outgoing
from services.common.db.retention import Pruner
from services.common.kafka.deadletter import Origin, dead_letter, replayed
from services.common.kafka.topics import Topics
from services.orchestrator.adapters import erasure, gauges, tables
from services.orchestrator.adapters import repository as repo
from services.orchestrator.adapters.message_steps import message_steps
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Lead
from services.orchestrator.metrics import OrchestratorMetrics

log = logging.getLogger(__name__)
CONSUMER = "nurture-orchestrator"


class DbClock:
    """Wall clock plus an offset stored in the database, shared by every replica; moved by
    `POST /v1/admin/clock/advance` so a 90-day program runs in seconds."""

    async def now(self, conn: AsyncConnection) -> float:
        return time.time() + await repo.clock_offset(conn)


@dataclass
class Parsed:
    key: str  # dedupe key: source + id
    lead_id: str
    event: dict[str, Any]
    score: dict[str, Any]
    event_time: float | None
    record: ConsumerRecord[bytes, bytes]


def parse(record: ConsumerRecord[bytes, bytes]) -> Parsed:
    """A scored event, or ValueError saying why it is not one."""
    try:
        doc = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"value is not JSON: {exc}") from None
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict):
        raise ValueError("not a scored event: no 'event' object")
    for attr in ("id", "source", "type", "subject"):
        if not isinstance(event.get(attr), str) or not event[attr]:
            raise ValueError(f"event has no '{attr}'")
    score = doc.get("score") if isinstance(doc.get("score"), dict) else {}
    when = None
    with contextlib.suppress(ValueError):
        when = event_epoch(event.get("time"))
    return Parsed(f"{event['source']}\x1f{event['id']}", event["subject"], event, score, when,
                  record)


@dataclass
class Orchestrator:
    """Everything the loops share."""

    engine: AsyncEngine
    decider: Decider
    topics: Topics
    metrics: OrchestratorMetrics
    clock: DbClock = field(default_factory=DbClock)
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """One transaction for a polled batch of scored events."""
        started = time.monotonic()
        parsed: list[Parsed] = []
        letters: list[Outgoing] = []
        failed: list[str] = []  # keys of events whose decision failed: not processed
        for record in records:
            try:
                parsed.append(parse(record))
            except ValueError as exc:
                letters.append(self._dead_letter(record, str(exc)))
        unparsed = len(letters)
        async with self.engine.begin() as conn:
            now = await self.clock.now(conn)
            fresh = await repo.claim_events(
                conn, keys=[p.key for p in parsed], now=now,
                replayed={p.key for p in parsed if replayed(p.record.headers)})
            todo = []
            for p in parsed:  # the first occurrence of a fresh key; redeliveries change nothing
                if p.key in fresh:
                    fresh.discard(p.key)
                    todo.append(p)
            leads = await repo.lock_leads(conn, lead_ids=[p.lead_id for p in todo])
            effects: list[tuple[str, Effects]] = []
            for p in todo:
                if p.event["type"] == erasure.ERASED:  # forget what came before it, in order
                    leads.pop(p.lead_id, None)
                    effects = [(lid, fx) for lid, fx in effects if lid != p.lead_id]
                    await erasure.erase(conn, lead_id=p.lead_id, topics=self.topics, now=now,
                                        announce=False)
                    continue
                before = leads.get(p.lead_id)
                saved = orjson.dumps(before) if before else None  # to restore on failure
                try:
                    lead, fx = self.decider.on_event_for(
                        before, p.lead_id, p.event, p.score, event_time=p.event_time or now,
                        now=now)
                except Exception as exc:  # one event the decisions choke on: dead-lettered,
                    # the lead as it was before it; the batch and the partition go on
                    log.exception("decision failed; event dead-lettered",
                                  extra={"event_id": p.event.get("id")})
                    if saved is not None:
                        leads[p.lead_id] = Lead.from_dict(orjson.loads(saved))
                    letters.append(self._dead_letter(p.record, f"{type(exc).__name__}: {exc}"))
                    failed.append(p.key)
                    continue
                leads[p.lead_id] = lead
                effects.append((p.lead_id, fx))
            # not marked processed: replayed from its dead letter after a fix, it is decided
            # again (and once decided, a second replay is a duplicate)
            await repo.mark_failed(conn, keys=failed, now=now)
            await repo.save(conn, leads=leads, effects=effects, extra_outbox=letters,
                            topics=self.topics, now=now)
            sends = await message_steps(conn, (p.event for p in todo))  # for observe_events
        # counted once committed (a rolled-back batch comes again and counts then)
        self.metrics.count_events(duplicate=len(parsed) - len(todo), dead_lettered=len(letters),
                                  processed=len(todo) - (len(letters) - unparsed))
        self.metrics.observe(effects)
        self.metrics.observe_events((p.event for p in todo), sends)
        self.metrics.batch_duration.observe(time.monotonic() - started)
        self.outbox_ready.set()

    def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str) -> Outgoing:
        key, value, headers = dead_letter(
            key=record.key, value=record.value, error=error, consumer=CONSUMER,
            origin=Origin(record.topic, record.partition, record.offset),
            failed_at=datetime.now(UTC))
        return Outgoing(self.topics.deadletter, key, value, [(k, v.decode()) for k, v in headers])

    async def fire_timers(self, limit: int = 200) -> int:
        """Fire due timers in one transaction; the number fired."""
        async with self.engine.begin() as conn:
            now = await self.clock.now(conn)
            due = await repo.claim_due_timers(conn, now=now, limit=limit)
            if not due:
                return 0
            leads = await repo.lock_leads(conn, lead_ids=[d.lead_id for d in due])
            effects = []
            for item in due:
                lead = leads.get(item.lead_id)
                if lead is None:
                    continue
                # decided at the current time, not the due time: a backlog (an outage, a clock
                # moved forward) still meets quiet hours and caps as they are now
                fx = self.decider.on_timer(lead, item.timer, now)
                effects.append((item.lead_id, fx))
                self.metrics.timer_lateness.observe(max(0.0, now - item.timer.due_at))
            await repo.save(conn, leads=leads, effects=effects, topics=self.topics, now=now)
        self.metrics.observe(effects)
        self.outbox_ready.set()
        return len(due)

    async def apply(self, lead_id: str,
                    decide: Callable[[Lead, float], Effects]) -> tuple[Lead, Effects]:
        """Run one decision for one lead (API commands), creating the lead if needed."""
        async with self.engine.begin() as conn:
            now = await self.clock.now(conn)
            leads = await repo.lock_leads(conn, lead_ids=[lead_id])
            lead = leads.get(lead_id) or Lead(lead_id, stage_entered_at=now, created_at=now)
            fx = decide(lead, now)
            await repo.save(conn, leads={lead_id: lead}, effects=[(lead_id, fx)],
                            topics=self.topics, now=now)
        self.metrics.observe([(lead_id, fx)])
        self.outbox_ready.set()
        return lead, fx

    async def prune(self, pruner: Pruner) -> dict[str, int]:
        """Delete the rows past the retention (adapters/retention.py), by the shared clock;
        the rows deleted per table."""
        async with self.engine.connect() as conn:
            now = await self.clock.now(conn)
        return await pruner.prune(now=datetime.fromtimestamp(now, UTC))

    async def refresh_gauges(self) -> int:
        """Recount the gauges (stages, enrollments, timers, outbox); 0, so the loop waits."""
        async with self.engine.connect() as conn:
            counts = await gauges.counts(conn, now=await self.clock.now(conn))
        self.metrics.refresh(counts, await outbox.backlog(self.engine, tables.outbox))
        return 0

    async def relay_outbox(self, producer: AIOKafkaProducer, limit: int = 500) -> int:
        """Publish pending outbox rows; they are deleted once Kafka acknowledged them."""
        published = await outbox.relay(self.engine, tables.outbox, producer, limit)
        self.metrics.published.inc(published)
        return published


