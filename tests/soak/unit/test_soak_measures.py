"""The measures of the endurance run (deploy/soak/measures.py): percentiles per window, latency
from due to receipt, when lag was back after a fault, and the bounded-growth rule."""

from __future__ import annotations

import pytest

from deploy.chaos.tally import Delivery
from deploy.soak.measures import (
    MB,
    ROWS,
    RSS,
    Tolerance,
    caught_up,
    growth,
    lag_recovery,
    latencies,
    percentile,
    summary,
    went_down,
    window,
)


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None),
    ([7.0], 99, 7.0),
    ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # nearest rank: ceil(0.5 * 4) = the 2nd
    ([4.0, 3.0, 2.0, 1.0], 50, 2.0),  # unsorted input
    ([float(v) for v in range(1, 101)], 95, 95.0),
    ([float(v) for v in range(1, 101)], 99, 99.0),
    ([float(v) for v in range(1, 101)], 100, 100.0),
    ([1.0, 1000.0], 99, 1000.0),  # one slow message of two is the p99
])
def test_percentile_is_the_nearest_rank(values: list[float], q: float,
                                        expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_a_window_takes_the_values_after_its_start_up_to_its_end() -> None:
    points = [(0.5, 10.0), (1.0, 20.0), (1.5, 30.0), (2.0, 40.0), (2.5, 99.0)]
    assert window(points, 1.0, 2.0) == {"count": 2, "p50": 30.0, "p95": 40.0, "p99": 40.0,
                                        "max": 40.0}
    assert window(points, 3.0, 4.0) == summary([]) == {"count": 0, "p50": None, "p95": None,
                                                       "p99": None, "max": None}


OFFSETS = {"touch-1": 0.0, "touch-2": 60.0, "touch-3": 120.0}
PLANNED = {"m1": ("a", "touch-1"), "m2": ("a", "touch-2"), "m3": ("a", "touch-3")}


def test_latency_runs_from_when_a_message_was_due_to_its_first_receipt() -> None:
    received = [(Delivery("email", "m1", "a"), 100.25),
                (Delivery("webhook", "m2", "a", "touch-2"), 160.5),
                (Delivery("webhook", "m2", "a", "touch-2"), 170.0),  # a raw repeat: ignored
                (Delivery("email", "m3", "a"), 221.0),
                (Delivery("email", "unknown", "b"), 5.0),  # its command not seen: left out
                (Delivery("email", "m9", "zz"), 5.0)]  # a lead the load never posted
    got = latencies(received, {**PLANNED, "m9": ("zz", "touch-1")}, {"a": 100.0}, OFFSETS)
    assert got == [(100.25, 0.25), (160.5, 0.5), (221.0, 1.0)]


@pytest.mark.parametrize(("lags", "tolerance", "expected"), [
    (None, 10, False),  # the broker could not be read
    ({}, 0, True),
    ({"nurture-dispatch": 0, "nurture-orchestrator": 0}, 0, True),
    ({"nurture-dispatch": 0, "nurture-orchestrator": 1}, 0, False),
    ({"nurture-dispatch": 10, "nurture-orchestrator": 3}, 10, True),
    ({"nurture-dispatch": 11, "nurture-orchestrator": 3}, 10, False),
])
def test_caught_up_means_every_group_within_the_tolerance(
        lags: dict[str, int] | None, tolerance: int, expected: bool) -> None:
    assert caught_up(lags, tolerance) is expected


READINGS = [(98.0, {"g": 0}), (100.0, None), (102.0, {"g": 500}), (104.0, {"g": 40}),
            (106.0, {"g": 3}), (108.0, {"g": 0})]


@pytest.mark.parametrize(("since", "tolerance", "bound", "expected"), [
    (100.0, 5, 60.0, 6.0),  # 106: 3 behind, within 5
    (100.0, 0, 60.0, 8.0),  # strictly zero only at 108
    (100.0, 0, 7.0, None),  # ... which is past the bound
    (100.0, 50, 60.0, 4.0),  # 104: 40 behind, within 50; the unreadable 100 does not count
    (109.0, 0, 60.0, None),  # no reading after the restore
    (97.0, 0, 60.0, 1.0),  # a reading before the restore does not count, one at/after does
])
def test_lag_recovery_is_the_first_caught_up_reading_after_the_restore(
        since: float, tolerance: int, bound: float, expected: float | None) -> None:
    assert lag_recovery(READINGS, since, tolerance=tolerance, bound=bound) == expected


def test_tolerances_are_relative_plus_absolute() -> None:
    assert Tolerance(1.25, 50).limit(400) == 550
    assert ROWS.limit(0) == 50  # an empty table may hold a few rows later
    assert RSS.limit(100 * MB) == 145 * MB


def flat(value: float, t0: float = 0.0, t1: float = 90.0) -> list[tuple[float, float]]:
    return [(float(t), value) for t in range(int(t0), int(t1) + 1, 5)]


def linear(per_second: float) -> list[tuple[float, float]]:
    return [(float(t), per_second * t) for t in range(0, 91, 5)]


@pytest.mark.parametrize(("points", "disturbed", "stat", "bounded"), [
    (flat(1000.0), [], "max", True),  # levelled off
    (linear(10.0), [], "max", False),  # rows never pruned: 900 > 1.25 * 595 + 50
    (linear(0.1), [], "max", True),  # a slow rise within the slack: 9 <= 1.25 * 5.5 + 50
    # a backlog during a fault in the last third is not growth: left out
    ([*flat(100.0)[:14], (70.0, 5000.0), (75.0, 4000.0), *flat(100.0, 80, 90)],
     [(68.0, 76.0)], "max", True),
    # ... but the same spike outside any fault is
    ([*flat(100.0)[:14], (70.0, 5000.0), (75.0, 4000.0), *flat(100.0, 80, 90)],
     [], "max", False),
    # memory: medians, so one high sample in the last third does not fail it
    ([*flat(100.0 * MB)[:15], (75.0, 500.0 * MB), *flat(100.0 * MB, 80, 90)], [], "median",
     True),
    (flat(100.0 * MB, 0, 55) + flat(200.0 * MB, 60, 90), [], "median", False),
])
def test_growth_compares_the_last_third_with_the_middle_third(
        points: list[tuple[float, float]], disturbed: list[tuple[float, float]], stat: str,
        bounded: bool) -> None:
    tolerance = RSS if stat == "median" else ROWS
    g = growth(points, start=0.0, end=90.0, disturbed=disturbed, tolerance=tolerance,
               stat=stat)
    assert g.bounded is bounded
    assert g.steady_only


def test_growth_uses_every_sample_when_faults_cover_a_third_and_none_without_samples() -> None:
    g = growth(linear(10.0), start=0.0, end=90.0, disturbed=[(55.0, 95.0)], tolerance=ROWS,
               stat="max")
    assert (g.bounded, g.steady_only, g.middle, g.last) == (False, False, 550.0, 900.0)
    nothing = growth([(1.0, 5.0)], start=0.0, end=90.0, disturbed=[], tolerance=ROWS,
                     stat="max")
    assert nothing.bounded is None and nothing.limit is None


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 2.0, 3.0], False),
    ([1.0, 2.0, 2.0], False),
    ([1.0, 5.0, 3.0, 4.0], True),
    ([], False),
])
def test_went_down_tells_pruning_at_work(values: list[float], expected: bool) -> None:
    assert went_down([(float(i), v) for i, v in enumerate(values)]) is expected
