"""Bounded state in the orchestrator, on the real migrated tables: processed-event marks go once
older than the retention by the shared (controllable) clock, batch by batch; the lead state and
the history the API reads stay; the service prunes on its own interval."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.db.retention import Pruner
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.adapters.retention import RULES
from services.orchestrator.bootstrap import Orchestrator, bootstrap
from services.orchestrator.entrypoints.http.app import create_app
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator.integration.test_orchestrator_service import (
    ADMIN,
    decider,
    produce,
    profile,
    scored,
)
from tests.orchestrator.integration.test_redelivery import TABLES, records, snapshot
from tests.orchestrator.support import orchestrator as build
from tests.support import isolated_kafka, migrated_schema, serve, wait_until

HOUR = 3600


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(database_url, upgrade, "oret") as engine:
        yield engine


def orchestrator(engine: AsyncEngine, registry: CollectorRegistry) -> Orchestrator:
    return build(engine, decider(), metrics=OrchestratorMetrics(registry))


def pruner(orch: Orchestrator, batch: int = 1000) -> Pruner:
    """A retention of one hour, by the orchestrator's clock."""
    return Pruner(orch.engine, RULES, timedelta(hours=1), orch.metrics.pruned, batch=batch)


async def advance(engine: AsyncEngine, seconds: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE clock SET offset_seconds = offset_seconds + :s"),
                           {"s": seconds})


async def marks(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT event_key FROM processed_events"))).scalars())


def shifted(batch: list[Any], by: int) -> list[Any]:
    """The same records as new events (other ids)."""
    return [dataclasses.replace(r, value=(r.value or b"").replace(b'"id":"e', b'"id":"f'),
                                offset=r.offset + by) for r in batch]


async def test_marks_older_than_the_retention_go_and_the_state_and_history_stay(
        engine: AsyncEngine) -> None:
    registry = new_registry()
    orch = orchestrator(engine, registry)
    first, second = records(0), shifted(records(1), 100)
    await orch.handlers.handle_scored_events(first)
    await advance(engine, 2 * HOUR)  # by the shared clock, as the API moves it
    await orch.handlers.handle_scored_events(second)
    recent = await marks(engine) - {f"t\x1fe{r.offset}" for r in first}
    assert len(recent) == len(second)
    before = await snapshot(engine)

    assert await orch.handlers.prune(pruner(orch, batch=7)) == {"processed_events": len(first)}
    assert await marks(engine) == recent
    after = await snapshot(engine)
    assert {k: after[k] for k in TABLES if k != "processed_events"} \
        == {k: before[k] for k in TABLES if k != "processed_events"}
    assert registry.get_sample_value("nurture_orchestrator_pruned_rows_total",
                                     {"table": "processed_events"}) == len(first)
    assert await orch.handlers.prune(pruner(orch)) == {"processed_events": 0}


async def test_a_backlog_goes_in_batches_of_one_statement_each(engine: AsyncEngine) -> None:
    orch = orchestrator(engine, new_registry())
    await orch.handlers.handle_scored_events(records(2))
    await advance(engine, 2 * HOUR)
    deletes: list[str] = []

    def seen(*args: Any) -> None:
        if args[2].startswith("DELETE"):
            deletes.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    assert await orch.handlers.prune(pruner(orch, batch=15)) == {"processed_events": 40}
    assert len(deletes) == 3  # 15 + 15 + 10
    assert await marks(engine) == set()


async def test_a_redelivery_is_a_duplicate_until_its_mark_is_pruned(engine: AsyncEngine) -> None:
    """The retention is the dedupe window: why it must outlast the topic's records."""
    registry = new_registry()
    orch = orchestrator(engine, registry)
    batch = records(3)

    def processed() -> float | None:
        return registry.get_sample_value("nurture_orchestrator_events_total",
                                         {"outcome": "processed"})

    await orch.handlers.handle_scored_events(batch)
    once = processed()
    assert once
    await advance(engine, HOUR - 60)
    await orch.handlers.prune(pruner(orch))
    await orch.handlers.handle_scored_events(batch)
    assert processed() == once
    await advance(engine, 120)
    await orch.handlers.prune(pruner(orch))
    await orch.handlers.handle_scored_events(batch)
    assert processed() == 2 * once


async def test_the_service_prunes_marks_on_its_interval_by_the_shared_clock(
        database_url: str, kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap)
    schema = f"oret_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, api_token="api-token",
        admin_token="admin-token", timer_poll_seconds=0.1, relay_idle_seconds=0.05,
        prune_interval_seconds=0.1)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        async with serve(create_app(bootstrap(settings, kafka, decider()))) as url, \
                httpx.AsyncClient() as client:
            async def ready() -> bool:
                return (await client.get(f"{url}/readyz")).status_code == 200
            await wait_until(ready, timeout=60, what="orchestrator ready")
            await produce(kafka, [profile("lead-1"), ("lead-1", scored("lead-1", "e1", "/x"))])
            await wait_until(lambda: _count(engine, "processed_events", 2), timeout=30,
                             what="both events processed")
            assert (await client.post(f"{url}/v1/admin/clock/advance", headers=ADMIN, json={
                "seconds": (settings.retention_days + 1) * 86400})).status_code == 200
            await wait_until(lambda: _count(engine, "processed_events", 0), timeout=30,
                             what="the marks pruned")
            assert await _count(engine, "leads", 1)
            metrics = (await client.get(f"{url}/metrics")).text
            assert 'nurture_orchestrator_pruned_rows_total{table="processed_events"} 2.0' \
                in metrics
    finally:
        await engine.dispose()


async def _count(engine: AsyncEngine, table: str, expected: int) -> bool:
    async with engine.connect() as conn:
        return await conn.scalar(text(f"SELECT count(*) FROM {table}")) == expected  # noqa: S608
