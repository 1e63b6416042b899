"""The orchestrator counts scored events by outcome only once their batch committed: an event
whose decision raised is dead-lettered, not processed; a batch that rolled back counts nothing,
so its redelivery is not counted twice. Real PostgreSQL; the commit fails for real (the outbox
table is renamed away, as a broken database would)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.metrics import OrchestratorMetrics
from tests.orchestrator.integration.test_orchestrator_service import decider
from tests.orchestrator.support import choking as chokes_on
from tests.orchestrator.support import orchestrator
from tests.support import model_score, scored_record


def record(offset: int, lead: str, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("scored", 0, offset, 0, 0, lead.encode(), value, None, len(lead),
                          len(value), [])


def good(offset: int, lead: str) -> ConsumerRecord[bytes, bytes]:
    return record(offset, lead, scored_record(
        {"id": f"e{offset}", "source": "t", "type": "web.page_viewed", "subject": lead,
         "time": "2026-11-20T10:00:00Z", "data": {"url": "u", "path": "/blog"}},
        model_score(1.0)))


def choking(offset: int) -> ConsumerRecord[bytes, bytes]:
    """Parses, but the decisions raise on it (`chokes_on` decides it with a bug)."""
    return record(offset, "lead-9", scored_record(
        {"id": f"bad{offset}", "source": "t", "type": "web.choke", "subject": "lead-9",
         "data": {}}))


def outcomes(registry: CollectorRegistry) -> dict[str, float]:
    return {o: registry.get_sample_value("nurture_orchestrator_events_total", {"outcome": o})
            or 0.0 for o in ("processed", "duplicate", "dead_lettered")}


@pytest.fixture
async def engine(database_url: str) -> AsyncEngine:
    schema = f"counts_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    return create_async_engine(database_url,
                               connect_args={"server_settings": {"search_path": schema}})


async def test_a_decision_that_raises_counts_as_dead_lettered_only(engine: AsyncEngine) -> None:
    registry = new_registry()
    orch = orchestrator(engine, chokes_on(decider()), metrics=OrchestratorMetrics(registry))
    try:
        await orch.handlers.handle_scored_events([
            good(0, "lead-1"), choking(1), record(2, "x", b"not json"), good(3, "lead-2")])
        assert outcomes(registry) == {"processed": 2, "duplicate": 0, "dead_lettered": 2}
    finally:
        await engine.dispose()


async def test_a_rolled_back_batch_counts_once_when_redelivered(engine: AsyncEngine) -> None:
    registry = new_registry()
    orch = orchestrator(engine, chokes_on(decider()), metrics=OrchestratorMetrics(registry))
    try:
        await orch.handlers.handle_scored_events([good(0, "lead-1")])
        batch = [good(0, "lead-1"), choking(1), good(2, "lead-2")]
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
        with pytest.raises(DBAPIError):
            await orch.handlers.handle_scored_events(batch)
        assert outcomes(registry) == {"processed": 1, "duplicate": 0, "dead_lettered": 0}
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
        await orch.handlers.handle_scored_events(batch)  # the redelivery
        assert outcomes(registry) == {"processed": 2, "duplicate": 1, "dead_lettered": 1}
    finally:
        await engine.dispose()
