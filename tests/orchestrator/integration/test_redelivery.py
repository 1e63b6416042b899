"""A redelivered batch changes nothing: the same records handled again (whole, or any part of
them in any order) leave every table exactly as it was. Real PostgreSQL, random batches."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.kafka.deadletter import REPLAYED_HEADER
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.metrics import OrchestratorMetrics
from tests.orchestrator.integration.test_orchestrator_service import decider
from tests.orchestrator.support import choking, orchestrator
from tests.support import model_score, scored_record

KINDS = [("crm.lead_upserted", {"email": "x@example.com"}),
         ("web.page_viewed", {"url": "u", "path": "/pricing"}),
         ("web.page_viewed", {"url": "u", "path": "/blog"}),
         ("web.form_submitted", {"form_id": "f", "form_type": "demo_request"})]
TABLES = ("leads", "stage_history", "enrollments", "timers", "messages", "processed_events",
          "outbox")


def records(seed: int) -> list[ConsumerRecord[bytes, bytes]]:
    rnd = random.Random(seed)
    out = []
    for offset in range(40):
        lead = f"lead-{rnd.randrange(6)}"
        etype, data = rnd.choice(KINDS)
        crossed = [("mql", "up")] if rnd.random() < 0.1 else []
        value = scored_record({"id": f"e{offset}", "source": "t", "type": etype,
                               "subject": lead, "time": "2026-11-20T10:00:00Z", "data": data},
                              model_score(1.0, crossed=crossed))
        out.append(ConsumerRecord("scored", 0, offset, 0, 0, lead.encode(), value, None,
                                  len(lead), len(value), []))
    return out


async def snapshot(engine: Any) -> dict[str, Any]:
    async with engine.connect() as conn:
        shot = {}
        for table in TABLES:
            rows = await conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            shot[table] = sorted(str(tuple(v for k, v in r._mapping.items()
                                           if k not in ("id", "processed_at", "created_at")))
                                 for r in rows)
        return shot


@pytest.mark.parametrize("seed", range(4))
async def test_a_redelivered_batch_changes_nothing(database_url: str, seed: int) -> None:
    schema = f"redeliver_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        orch = orchestrator(engine, decider(), metrics=OrchestratorMetrics(new_registry()))
        batch = records(seed)
        await orch.handlers.handle_scored_events(batch)
        before = await snapshot(engine)
        assert before["leads"] and before["processed_events"]
        await orch.handlers.handle_scored_events(batch)
        part = random.Random(seed).sample(batch, k=len(batch) // 2)
        await orch.handlers.handle_scored_events(part)
        assert await snapshot(engine) == before
    finally:
        await engine.dispose()


async def test_an_event_the_decisions_choke_on_is_dead_lettered_and_the_rest_goes_on(
        database_url: str) -> None:
    schema = f"poison_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        orch = orchestrator(engine, choking(decider()),
                            metrics=OrchestratorMetrics(new_registry()))
        good = records(1)[:3]
        poison_value = scored_record({"id": "bad", "source": "t", "type": "web.choke",
                                      "subject": "lead-0", "data": {}})
        poison = ConsumerRecord("scored", 0, 99, 0, 0, b"lead-0", poison_value, None, 6,
                                len(poison_value), [])
        await orch.handlers.handle_scored_events([good[0], poison, *good[1:]])
        shot = await snapshot(engine)
        assert len(shot["processed_events"]) == 4  # the poison one is not retried forever
        async with engine.connect() as conn:
            topics = [r.topic for r in await conn.execute(text("SELECT topic FROM outbox"))]
        assert topics.count(Topics().deadletter) == 1
        assert shot["leads"]  # the good events were decided and saved

        # redelivered (a crash before the commit): nothing
        await orch.handlers.handle_scored_events([poison])
        # replayed from its dead letter (`nurture-dlq replay`): decided again, here failing
        # again, so a second dead letter
        replay = ConsumerRecord("scored", 0, 100, 0, 0, b"lead-0", poison_value, None, 6,
                                len(poison_value), [(REPLAYED_HEADER, b"0/1")])
        async with engine.connect() as conn:
            letters = (await conn.execute(text(
                "SELECT count(*) FROM outbox WHERE topic = :t"), {"t": Topics().deadletter}))
            assert letters.scalar() == 1
        await orch.handlers.handle_scored_events([replay])
        async with engine.connect() as conn:
            letters = (await conn.execute(text(
                "SELECT count(*) FROM outbox WHERE topic = :t"), {"t": Topics().deadletter}))
            assert letters.scalar() == 2
        assert len((await snapshot(engine))["processed_events"]) == 4
    finally:
        await engine.dispose()


async def test_a_late_timer_is_decided_at_the_current_time(database_url: str) -> None:
    schema = f"late_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        orch = orchestrator(engine, decider(), metrics=OrchestratorMetrics(new_registry()))
        profile = scored_record({"id": "p", "source": "t", "type": "crm.lead_upserted",
                                 "subject": "lead-1", "data": {"email": "a@x.io"}})
        visit = scored_record({"id": "v", "source": "t", "type": "web.page_viewed",
                               "subject": "lead-1", "data": {"url": "u", "path": "/pricing"}})
        await orch.handlers.handle_scored_events([
            ConsumerRecord("s", 0, i, 0, 0, b"lead-1", v, None, 6, len(v), [])
            for i, v in enumerate((profile, visit))])
        async with engine.begin() as conn:  # ten hours late
            await conn.execute(text("UPDATE clock SET offset_seconds = 36000"))
            due = await conn.scalar(text("SELECT extract(epoch FROM due_at) FROM timers"))
        assert await orch.handlers.fire_timers() == 1
        async with engine.connect() as conn:
            sent_at = await conn.scalar(text(
                "SELECT extract(epoch FROM at) FROM messages WHERE status = 'sent'"))
        assert float(sent_at) > float(due) + 8 * 3600
    finally:
        await engine.dispose()


async def test_a_record_kafka_refuses_is_parked_and_the_rest_is_published(
        database_url: str, kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer

    from services.common.db.outbox import Outgoing, enqueue
    from services.orchestrator.adapters import tables
    from tests.support import isolated_kafka, read_topic

    kafka = await isolated_kafka(kafka_bootstrap)
    topics = Topics(kafka.topic_prefix)
    schema = f"park_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        orch = orchestrator(engine, decider(), topics=topics,
                            metrics=OrchestratorMetrics(new_registry()))
        async with engine.begin() as conn:
            await enqueue(conn, tables.outbox, [
                Outgoing(topics.stages, b"lead-1", b"x" * 2_000_000, []),  # over 1 MiB
                Outgoing(topics.stages, b"lead-1", b'{"ok": true}', [])],
                datetime.now(UTC))
        assert await orch.relay_outbox(producer) == 1
        assert await orch.relay_outbox(producer) == 0  # the parked row is not retried
        records = await read_topic(kafka.bootstrap_servers, topics.stages,
                                   until=lambda rs: len(rs) >= 1)
        assert [r.value for r in records] == [b'{"ok": true}']
        async with engine.connect() as conn:
            parked = (await conn.execute(text("SELECT parked_reason FROM outbox"))).scalars()
            assert list(parked) == ["refused by Kafka: record too large"]
    finally:
        await producer.stop()
        await engine.dispose()
