"""Which partitions the scoring worker reports as stalled (`Stalls`, faust_app workaround 13):
records to read and the same read offset for `after` seconds, reported once per stall; and a
table recovery that stops reading its changelog (`report_recovery_stalls`)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from services.scoring.adapters.faust_app import _reread_changelog, report_recovery_stalls
from services.scoring.adapters.stalls import Stalls, watched_tasks


def test_a_partition_behind_and_not_moving_is_reported_once_after_the_wait() -> None:
    stalls = Stalls(after=30)
    assert stalls.observe(0, {"p1": 5}, {"p1": 10}) == []
    assert stalls.observe(29, {"p1": 5}, {"p1": 10}) == []
    assert stalls.observe(30, {"p1": 5}, {"p1": 10}) == ["p1"]
    assert stalls.observe(60, {"p1": 5}, {"p1": 10}) == []  # once per stall


def test_a_partition_that_moves_or_is_caught_up_is_not_stalled() -> None:
    stalls = Stalls(after=30)
    stalls.observe(0, {"moving": 5, "idle": 0, "never": 3}, {"moving": 10, "idle": 7})
    assert stalls.observe(40, {"moving": 5, "idle": 0, "never": 3},
                          {"moving": 11, "idle": 7}) == ["never"]  # nothing read, ever


def test_a_stall_after_progress_is_reported_again() -> None:
    stalls = Stalls(after=30)
    stalls.observe(0, {"p1": 5}, {"p1": 10})
    assert stalls.observe(30, {"p1": 5}, {"p1": 10}) == ["p1"]
    stalls.observe(40, {"p1": 5}, {"p1": 12})  # it moved
    assert stalls.observe(69, {"p1": 5}, {"p1": 12}) == []
    assert stalls.observe(70, {"p1": 5}, {"p1": 12}) == ["p1"]


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    stalls = Stalls(after=30)
    stalls.observe(0, {"p1": 5}, {"p1": 10})
    stalls.observe(10, {}, {})  # revoked
    assert stalls.observe(35, {"p1": 5}, {"p1": 10}) == []  # its wait starts again
    assert stalls.observe(65, {"p1": 5}, {"p1": 10}) == ["p1"]


CHANGELOG = "lead-state-changelog"


def _recovering_app(offsets: dict[TopicPartition, int],
                    highwaters: dict[TopicPartition, int]) -> SimpleNamespace:
    """What `report_recovery_stalls` reads of a faust app in recovery: the recovery's offsets
    (faust's Counters) and a consumer (read best effort, so a bare one will do)."""
    recovery = SimpleNamespace(active_tps=set(offsets), active_offsets=Counter(offsets),
                               active_highwaters=Counter(highwaters))
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery), in_recovery=True,
                           consumer=SimpleNamespace(flow_active=True), monitor=None)


def test_a_recovery_that_stops_reading_its_changelog_is_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    stuck, done = TopicPartition(CHANGELOG, 1), TopicPartition(CHANGELOG, 0)
    app = _recovering_app({stuck: 3, done: 9}, {stuck: 12, done: 9})
    stalls = Stalls(after=30)
    with caplog.at_level(logging.WARNING, logger="services.scoring.adapters.faust_app"):
        report_recovery_stalls(app, stalls, 0)
        report_recovery_stalls(app, stalls, 29)
        assert caplog.records == []
        report_recovery_stalls(app, stalls, 30)
    [record] = caplog.records
    assert record.partitions == ["lead-state-changelog[1]"]  # type: ignore[attr-defined]
    assert record.recovery == {  # type: ignore[attr-defined]
        "lead-state-changelog[1]": {"read": 3, "last": 12}}
    assert record.consumer["flow_active"] is True  # type: ignore[attr-defined]


def test_a_recovery_that_reads_on_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    tp = TopicPartition(CHANGELOG, 0)
    app = _recovering_app({tp: 3}, {tp: 12})
    stalls = Stalls(after=30)
    with caplog.at_level(logging.WARNING, logger="services.scoring.adapters.faust_app"):
        report_recovery_stalls(app, stalls, 0)
        app.tables.recovery.active_offsets[tp] = 4
        report_recovery_stalls(app, stalls, 40)
    assert caplog.records == []


def test_a_stalled_recovery_is_returned_and_its_partitions_re_read_after_the_last_read() -> None:
    stuck = TopicPartition(CHANGELOG, 1)
    app = _recovering_app({stuck: 3}, {stuck: 12})
    sought: list[tuple[TopicPartition, int]] = []

    async def seek(tp: TopicPartition, offset: int) -> None:
        sought.append((tp, offset))
    app.consumer.seek = seek
    stalls = Stalls(after=30)
    assert report_recovery_stalls(app, stalls, 0) == []
    stalled = report_recovery_stalls(app, stalls, 30)
    assert stalled == [stuck]
    asyncio.run(_reread_changelog(app, stalled))
    assert sought == [(stuck, 4)]
    app.in_recovery = False  # recovered meanwhile: nothing to re-read
    asyncio.run(_reread_changelog(app, stalled))
    assert sought == [(stuck, 4)]


async def _drain_messages(never: asyncio.Event) -> None:  # named as faust's fetch loop
    await never.wait()


async def test_the_report_says_where_the_watched_tasks_wait() -> None:
    never = asyncio.Event()
    task = asyncio.create_task(_drain_messages(never), name="fetcher")
    await asyncio.sleep(0)  # it starts and waits
    try:
        chain = watched_tasks()["fetcher"]
    finally:
        task.cancel()
    assert chain[0].startswith("_drain_messages:")
    assert any(step.startswith("Event.wait:") for step in chain)
    assert chain[-1].startswith("Future")  # what Event.wait awaits
