"""The pruner says so at start-up when its retention does not outlast the records of the topic
its rows dedupe (a redelivery older than the marks would be processed again)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.db.retention import Pruner, pruned_rows
from services.common.observability.metrics import new_registry
from services.dispatch.adapters.retention import RULES


@pytest.mark.parametrize(("days", "warned"), [(30, False), (21.5, False), (21, True),
                                              (0.002, True)])
async def test_a_retention_the_topic_outlasts_is_warned_about(
        caplog: pytest.LogCaptureFixture, days: float, warned: bool) -> None:
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")  # never used
    counter = pruned_rows(new_registry(), "dispatch", RULES)
    with caplog.at_level(logging.WARNING, logger="services.common.db.retention"):
        Pruner(engine, RULES, timedelta(days=days), counter, dedupes="nurture.dispatch.v1")
    await engine.dispose()
    assert any("retention shorter" in r.message for r in caplog.records) is warned


def test_every_table_is_counted_from_zero() -> None:
    registry = new_registry()
    pruned_rows(registry, "dispatch", RULES)
    assert registry.get_sample_value("nurture_dispatch_pruned_rows_total",
                                     {"table": "deliveries"}) == 0
