"""Bounded state in dispatch, on the real migrated tables: deliveries in a final status go once
older than the retention, batch by batch; pending and sending ones, the suppression list and
parked outbox rows stay; the statement uses its partial index; the service prunes on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db.retention import Pruner
from services.common.observability.metrics import new_registry
from services.dispatch.adapters import repository as repo
from services.dispatch.adapters import tables as t
from services.dispatch.adapters.migrate import upgrade
from services.dispatch.adapters.retention import RULES
from services.dispatch.metrics import DispatchMetrics
from tests.dispatch.integration.dispatch_harness import SmtpSink, command, dispatch_service, produce
from tests.support import isolated_kafka, migrated_schema, wait_until

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAYS_30 = timedelta(days=30)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(database_url, upgrade, "dret") as engine:
        yield engine


class Metrics:
    """Dispatch's metrics on a registry of their own."""

    def __init__(self) -> None:
        self.registry = new_registry()
        self.dispatch = DispatchMetrics(self.registry)

    def pruned(self) -> float | None:
        return self.registry.get_sample_value("nurture_dispatch_pruned_rows_total",
                                              {"table": "deliveries"})


def pruner(engine: AsyncEngine, metrics: Metrics, batch: int = 1000) -> Pruner:
    """A retention of 30 days."""
    return Pruner(engine, RULES, DAYS_30, metrics.dispatch.pruned, batch=batch)


def row(message_id: str, status: str, updated_at: datetime) -> dict[str, Any]:
    return {"message_id": message_id, "lead_id": "lead-1", "channel": "email", "status": status,
            "attempts": 1, "origin_topic": "nurture.dispatch.v1", "origin_partition": 0,
            "origin_offset": 0, "created_at": updated_at, "updated_at": updated_at}


async def message_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(t.deliveries.c.message_id))).scalars())


async def test_old_final_deliveries_go_and_every_other_row_stays(engine: AsyncEngine) -> None:
    old, recent = NOW - DAYS_30 - timedelta(minutes=1), NOW - DAYS_30 + timedelta(minutes=1)
    async with engine.begin() as conn:
        await conn.execute(insert(t.deliveries), [
            row(f"{age}-{status}", status, at)
            for age, at in (("old", old), ("recent", recent)) for status in t.STATUSES])
        await conn.execute(insert(t.suppressions).values(
            lead_id="lead-1", channel="*", reason="unsubscribed", at=old))
        await conn.execute(insert(t.outbox).values(
            topic="nurture.events.v1", key=b"lead-1", value=b"{}", headers=[], created_at=old,
            parked_reason="refused by Kafka: record too large"))
    metrics = Metrics()
    assert await pruner(engine, metrics, batch=3).prune(now=NOW) == {"deliveries": 4}
    assert await message_ids(engine) == {"old-pending", "old-sending",
                                         *(f"recent-{s}" for s in t.STATUSES)}
    assert metrics.pruned() == 4
    async with engine.connect() as conn:
        assert await conn.scalar(select(t.suppressions.c.reason)) == "unsubscribed"
        assert await conn.scalar(select(t.outbox.c.parked_reason)) is not None


async def test_a_backlog_goes_in_batches_of_one_statement_each(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(t.deliveries), [
            row(f"m-{i}", "sent", NOW - timedelta(days=40 + i)) for i in range(25)])
    deletes: list[str] = []

    def seen(*args: Any) -> None:
        if args[2].startswith("DELETE"):
            deletes.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    metrics = Metrics()
    assert await pruner(engine, metrics, batch=10).prune(now=NOW) == {"deliveries": 25}
    assert len(deletes) == 3  # 10 + 10 + 5: a short batch ends the round
    assert await message_ids(engine) == set()
    assert await pruner(engine, metrics, batch=10).prune(now=NOW) == {"deliveries": 0}
    assert metrics.pruned() == 25


async def test_a_row_another_transaction_holds_is_skipped_and_kept_if_it_changed(
        engine: AsyncEngine) -> None:
    """A replay sending a failed delivery back to pending holds its row: the prune neither
    waits for it nor deletes it once it is pending."""
    old = NOW - timedelta(days=31)
    async with engine.begin() as conn:
        await conn.execute(insert(t.deliveries), [row("held", "failed", old),
                                                  row("free", "failed", old)])
    metrics = Metrics()
    async with engine.connect() as other:
        await other.execute(select(t.deliveries).where(t.deliveries.c.message_id == "held")
                            .with_for_update())
        result = await asyncio.wait_for(pruner(engine, metrics).prune(now=NOW), timeout=30)
        assert result == {"deliveries": 1}
        await other.execute(update(t.deliveries).where(t.deliveries.c.message_id == "held")
                            .values(status="pending"))
        await other.commit()
    assert await pruner(engine, metrics).prune(now=NOW) == {"deliveries": 0}
    assert await message_ids(engine) == {"held"}


async def test_a_command_is_a_duplicate_until_its_delivery_is_pruned(
        engine: AsyncEngine) -> None:
    """The retention is the dedupe window: why it must outlast the dispatch topic's records."""
    new = repo.NewDelivery("m-1", "lead-1", "email", b"{}", "nurture.dispatch.v1", 0, 7)
    async with engine.begin() as conn:
        assert await repo.insert_deliveries(conn, rows=[new], now=NOW) == {"m-1"}
        await repo.finish(conn, message_id="m-1", status="sent", now=NOW)
        assert await repo.insert_deliveries(conn, rows=[new], now=NOW) == set()
    metrics = Metrics()
    assert await pruner(engine, metrics).prune(now=NOW + DAYS_30 - timedelta(seconds=1)) \
        == {"deliveries": 0}
    async with engine.begin() as conn:
        assert await repo.insert_deliveries(conn, rows=[new], now=NOW) == set()
        await repo.finish(conn, message_id="m-1", status="sent", now=NOW)
    assert await pruner(engine, metrics).prune(now=NOW + DAYS_30 + timedelta(seconds=1)) \
        == {"deliveries": 1}
    async with engine.begin() as conn:
        assert await repo.insert_deliveries(conn, rows=[new], now=NOW) == {"m-1"}


async def test_the_prune_statement_reads_the_partial_index_in_a_generic_plan(
        engine: AsyncEngine) -> None:
    """The statement exactly as sent (the cutoff and limit as parameters), planned once for
    every value: it can only use `deliveries_final` if the statuses match its predicate."""
    sent: list[str] = []

    def seen(*args: Any) -> None:
        if args[2].startswith("DELETE"):
            sent.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    await pruner(engine, Metrics()).prune(now=NOW)
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; "
                          f"PREPARE prune AS {sent[0]}")
        plan = "\n".join(r[0] for r in await raw.fetch(
            "EXPLAIN EXECUTE prune('2026-01-01T00:00:00Z', 10)"))
        await conn.invalidate()  # the session's settings and prepared statement go with it
    assert "deliveries_final" in plan, plan


async def test_the_service_prunes_sent_deliveries_on_its_interval(
        database_url: str, kafka_bootstrap: str) -> None:
    sink = SmtpSink()
    await sink.start()
    kafka = await isolated_kafka(kafka_bootstrap)
    try:
        async with dispatch_service(database_url, kafka, smtp_port=sink.port,
                                    retention_days=0.5 / 86400,
                                    prune_interval_seconds=0.1) as run:
            await produce(kafka, [command("lead-1")])
            await wait_until(lambda: len(sink.received) == 1, timeout=60, what="the email")

            async def gone() -> bool:
                async with run.engine.connect() as conn:
                    return await conn.scalar(text("SELECT count(*) FROM deliveries")) == 0
            await wait_until(gone, timeout=30, what="the sent delivery pruned")
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"{run.url}/metrics")).text
            assert 'nurture_dispatch_pruned_rows_total{table="deliveries"} 1.0' in metrics
    finally:
        await sink.stop()
