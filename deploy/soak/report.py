"""The verdict and the table of an endurance run (pure): the fault run's counting
(deploy/chaos/tally.py) plus what only a long run shows: lag back after every fault, lag zero
at the end, tables that are pruned and process memory levelling off."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deploy.chaos.tally import markdown_table
from deploy.soak.measures import (
    LATENCY,
    MB,
    ROWS,
    RSS,
    Lags,
    Point,
    growth,
    lag_recovery,
    summary,
)

# Rows that only serve idempotency or history, pruned after a retention (or, the outboxes,
# deleted once published): their counts must level off. Other tables hold the leads' state and
# grow with the leads; they are charted, not judged.
PRUNED = ("nurture.processed_events", "nurture.outbox", "nurture_dispatch.deliveries",
          "nurture_dispatch.outbox")
# charted, not judged: the servers whose memory is their configuration's (a fixed JVM heap,
# shared buffers), and the driver, which keeps every observation of the run by design
UNJUDGED_MEMORY = frozenset({"kafka", "postgres", "driver"})


def schedule(duration: float, every: float, faults: Sequence[str]) -> list[tuple[float, str]]:
    """When each fault is injected (seconds into the load) and which: one every `every`
    seconds, the first half a period in, taking `faults` in turn, as many as fit."""
    if not faults or every <= 0:
        return []
    return [((i + 0.5) * every, faults[i % len(faults)]) for i in range(int(duration // every))]


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault, in seconds into the run: injected, restored (restart done), and the
    pipeline's recovery as the fault run measured it (every stage moved again)."""

    name: str
    at: float
    restored: float
    recovery: float | None


def series(samples: Sequence[Mapping[str, Any]], field: str) -> dict[str, list[Point]]:
    """Per name, the (t, value) points of one mapping field of the samples (`rss`, `rows`),
    None values left out."""
    out: dict[str, list[Point]] = {}
    for sample in samples:
        for name, value in (sample.get(field) or {}).items():
            if value is not None:
                out.setdefault(name, []).append((float(sample["t"]), float(value)))
    return out


def judge(counts: Mapping[str, Any], *, samples: Sequence[Mapping[str, Any]],
          lag_points: Sequence[tuple[float, Lags | None]], faults: Sequence[Fault],
          load: tuple[float, float], final_lag: Lags | None, latency: Sequence[Point],
          lag_tolerance: int, lag_bound: float,
          pruned: Sequence[str] = PRUNED) -> dict[str, Any]:
    """The figures and whether the run passed: the fault run's counting passed (accepted =
    scored = processed, exactly one delivery per expected (lead, step), no dead letters, every
    fault recovered), lag back within `lag_bound` seconds of each restore and zero at the end,
    every pruned table's count, every service's RSS and the latency bounded
    (measures.growth)."""
    problems = [f"counting: {p}" for p in counts.get("problems", [])]
    fault_rows = []
    disturbed = []
    for f in faults:
        back = lag_recovery(lag_points, f.restored, tolerance=lag_tolerance, bound=lag_bound)
        fault_rows.append({"fault": f.name, "at": round(f.at, 1),
                           "outage_seconds": round(f.restored - f.at, 1),
                           "recovery_seconds": f.recovery, "lag_recovery_seconds":
                               None if back is None else round(back, 1)})
        disturbed.append((f.at, f.restored + (lag_bound if back is None else back)))
        if back is None:
            problems.append(f"lag not back within {lag_bound:.0f} s of restoring {f.name}")
    if final_lag is None or any(final_lag.values()):
        problems.append(f"consumer lag at the end: {final_lag}")
    start, end = load
    rows = series(samples, "rows")
    tables: dict[str, Any] = {}
    for name in pruned:
        g = growth(rows.get(name, []), start=start, end=end, disturbed=disturbed,
                   tolerance=ROWS, stat="max")
        tables[name] = g.as_dict()
        if g.bounded is None:
            problems.append(f"{name}: no row counts in the middle and last thirds")
        elif not g.bounded:
            problems.append(f"{name} kept growing: {g.last:.0f} rows in the last third, "
                            f"limit {g.limit:.0f} (middle third {g.middle:.0f})")
    memory: dict[str, Any] = {}
    for name, points in sorted(series(samples, "rss").items()):
        g = growth(points, start=start, end=end, disturbed=disturbed, tolerance=RSS,
                   stat="median")
        memory[name] = {**g.as_dict(), "judged": name not in UNJUDGED_MEMORY}
        if name not in UNJUDGED_MEMORY and g.bounded is False:
            problems.append(f"{name} memory kept growing: {_mb(g.last)} in the last third, "
                            f"limit {_mb(g.limit)} (middle third {_mb(g.middle)})")
    p50 = [(float(s["t"]), float(s["latency_ms"]["p50"])) for s in samples
           if (s.get("latency_ms") or {}).get("p50") is not None]
    pace = growth(p50, start=start, end=end, disturbed=disturbed, tolerance=LATENCY,
                  stat="median")
    if pace.bounded is False:
        problems.append(f"latency kept growing (the pipeline fell behind the load): p50 "
                        f"{pace.last:.0f} ms in the last third, limit {pace.limit:.0f} ms "
                        f"(middle third {pace.middle:.0f} ms)")
    if not samples:
        problems.append("no samples")
    return {"passed": not problems, "problems": problems, "counts": dict(counts),
            "faults": fault_rows, "final_lag": final_lag,
            "lag_tolerance_records": lag_tolerance,
            "growth": {"tables": tables, "rss": memory, "latency_p50_ms": pace.as_dict()},
            "latency_ms": summary([v * 1000 for t, v in latency if start <= t <= end])}


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / MB:.0f} MB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(figures: Mapping[str, Any]) -> str:
    """The endurance figures as a Markdown table (the counting has its own, tally.table)."""
    c = figures["counts"]
    s = figures.get("settings", {})
    rows = [("duration of the load / leads", f"{s.get('load_seconds', '-')} s / "
                                             f"{c['events_sent'] // 3}"),
            ("events sent / accepted / scored / processed",
             f"{c['events_sent']} / {c['events_accepted']} / {c['events_scored']} / "
             f"{c['events_processed']}"),
            ("messages expected / received", f"{c['messages_expected']} / "
                                             f"{c['messages_received']}"),
            ("messages lost / duplicates / unexpected",
             f"{c['messages_lost']} / {c['duplicates']} / {c['messages_unexpected']}"),
            ("dead letters", str(sum(c["dead_letters"].values())))]
    for f in figures["faults"]:
        moved, lag = f["recovery_seconds"], f["lag_recovery_seconds"]
        rows.append((f"{f['fault']} at {f['at'] / 60:.1f} min",
                     ("pipeline stuck" if moved is None else f"moving after {moved:.1f} s")
                     + "; " + ("lag not back" if lag is None else f"lag back after {lag:.1f} s")))
    rows.append(("consumer lag at the end", ", ".join(
        f"{g}: {n}" for g, n in sorted((figures["final_lag"] or {}).items())) or "unknown"))
    lat = figures["latency_ms"]
    rows.append(("latency due → received, ms: p50 / p95 / p99 / max",
                 f"{_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])} / "
                 f"{_ms(lat['max'])} ({lat['count']} messages)"))
    rows.append(("latency p50, ms: middle → last third (median)",
                 _growth(figures["growth"]["latency_p50_ms"], _count)))
    for name, g in figures["growth"]["tables"].items():
        rows.append((f"rows {name}: middle → last third (max)", _growth(g, _count)))
    for name, g in figures["growth"]["rss"].items():
        rows.append((f"RSS {name}: middle → last third (median)",
                     _growth(g, _mb) if g["judged"] else _growth(g, _mb) + " (not judged)"))
    return markdown_table(rows, figures, heading="soak figure")


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _growth(g: Mapping[str, Any], show: Callable[[float | None], str]) -> str:
    if g["bounded"] is None:
        return "too few samples"
    verdict = "levels off" if g["bounded"] else "GROWING"
    return f"{show(g['middle'])} → {show(g['last'])} (limit {show(g['limit'])}): {verdict}"
