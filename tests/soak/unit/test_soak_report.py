"""The verdict of the endurance run (deploy/soak/report.py): when faults come, what passes, and
each way it fails."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.soak.measures import MB
from deploy.soak.report import PRUNED, Fault, judge, schedule, series, table


@pytest.mark.parametrize(("duration", "every", "faults", "expected"), [
    (1800.0, 300.0, ("a", "b", "c", "d", "e", "f"),
     [(150.0, "a"), (450.0, "b"), (750.0, "c"), (1050.0, "d"), (1350.0, "e"), (1650.0, "f")]),
    (120.0, 60.0, ("kill-dispatch", "kill-orchestrator"),
     [(30.0, "kill-dispatch"), (90.0, "kill-orchestrator")]),
    (3600.0, 900.0, ("a", "b"), [(450.0, "a"), (1350.0, "b"), (2250.0, "a"), (3150.0, "b")]),
    (100.0, 300.0, ("a",), []),  # shorter than one period: no fault
    (1800.0, 300.0, (), []),
])
def test_a_fault_every_period_half_a_period_in_taken_in_turn(
        duration: float, every: float, faults: tuple[str, ...],
        expected: list[tuple[float, str]]) -> None:
    assert schedule(duration, every, faults) == expected


COUNTS: dict[str, Any] = {
    "events_sent": 300, "events_accepted": 300, "events_scored": 300, "events_processed": 300,
    "messages_expected": 300, "messages_received": 300, "messages_lost": 0, "duplicates": 0,
    "messages_unexpected": 0, "dead_letters": {}, "problems": [], "passed": True}
SERVICES = ("ingest", "scoring-1", "orchestrator", "dispatch")


def samples(*, deliveries: float = 0.0, rss_growth: float = 0.0, kafka_growth: float = 0.0,
            latency_growth: float = 0.0) -> list[dict[str, Any]]:
    """A sample every 5 s over a 90 s load: pruned tables level off at 100 rows, plus
    `deliveries` rows per second for dispatch's; service memory at 80 MB plus `rss_growth`
    bytes per second; a p50 latency of 200 ms plus `latency_growth` ms per second (none in
    the first window)."""
    out = []
    for t in range(0, 91, 5):
        p50 = None if t == 0 else 200 + latency_growth * t
        rows = {name: min(100, 10 * t) for name in PRUNED}
        rows["nurture_dispatch.deliveries"] += int(deliveries * t)
        rows["nurture.leads"] = 3 * t  # state: grows with the leads, not judged
        rss = {name: 80 * MB + rss_growth * t for name in SERVICES}
        rss["kafka"] = 400 * MB + kafka_growth * t
        out.append({"t": float(t), "rows": rows, "rss": rss, "latency_ms": {"p50": p50}})
    return out


LAG = [(float(t), {"nurture-dispatch": 400 if 30 <= t < 40 else 0}) for t in range(0, 91, 2)]


def verdict(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "samples": samples(), "lag_points": LAG,
        "faults": [Fault("kill-dispatch", 30.0, 34.0, 0.5)], "load": (0.0, 90.0),
        "final_lag": {"nurture-dispatch": 0}, "latency": [(10.0, 0.2), (50.0, 0.3)],
        "lag_tolerance": 5, "lag_bound": 20.0}
    args.update(changes)
    counts = args.pop("counts", COUNTS)
    return judge(counts, **args)


def test_a_clean_run_passes_with_the_lag_recovery_of_each_fault() -> None:
    figures = verdict()
    assert figures["passed"], figures["problems"]
    assert figures["faults"] == [{"fault": "kill-dispatch", "at": 30.0, "outage_seconds": 4.0,
                                  "recovery_seconds": 0.5, "lag_recovery_seconds": 6.0}]
    assert set(figures["growth"]["tables"]) == set(PRUNED)
    assert figures["growth"]["rss"]["kafka"]["judged"] is False
    assert figures["latency_ms"]["count"] == 2
    assert figures["growth"]["latency_p50_ms"]["bounded"] is True
    assert "PASS" in table(figures)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"counts": {**COUNTS, "problems": ["3 email messages lost"], "passed": False}},
     "counting: 3 email messages lost"),
    ({"lag_bound": 5.0}, "lag not back within 5 s of restoring kill-dispatch"),
    ({"final_lag": {"nurture-dispatch": 2}}, "consumer lag at the end"),
    ({"final_lag": None}, "consumer lag at the end"),
    ({"samples": samples(deliveries=10.0)}, "nurture_dispatch.deliveries kept growing"),
    ({"samples": [s for s in samples() if s["t"] < 30]},
     "nurture.processed_events: no row counts"),
    ({"samples": samples(rss_growth=5.0 * MB)}, "dispatch memory kept growing"),
    # a pipeline falling behind: its backlog waits in the tables, Kafka lag stays low
    ({"samples": samples(latency_growth=200.0)}, "latency kept growing"),
    ({"samples": []}, "no samples"),
])
def test_each_way_a_run_fails(changes: dict[str, Any], problem: str) -> None:
    figures = verdict(**changes)
    assert not figures["passed"]
    assert any(p.startswith(problem) for p in figures["problems"]), figures["problems"]
    assert "FAIL: " in table(figures)


def test_the_servers_memory_is_charted_not_judged() -> None:
    figures = verdict(samples=samples(kafka_growth=20.0 * MB))
    assert figures["passed"], figures["problems"]
    assert figures["growth"]["rss"]["kafka"]["bounded"] is False
    assert "(not judged)" in table(figures)


def test_series_takes_one_field_per_name_and_skips_unknown_values() -> None:
    got = series([{"t": 0.0, "rss": {"a": 1, "b": None}}, {"t": 5.0, "rss": {"a": 2}},
                  {"t": 10.0, "rss": None}], "rss")
    assert got == {"a": [(0.0, 1.0), (5.0, 2.0)]}
