"""Which partitions the scoring worker reports as stalled (`Stalls`, faust_app workaround 13):
records to read and the same read offset for `after` seconds, reported once per stall."""

from __future__ import annotations

from services.scoring.adapters.stalls import Stalls


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

