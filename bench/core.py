"""What every benchmark shares: sizes (quick or full), timing and percentiles, the comparison
record (real vs baseline, with the ratio and the target), synthetic events, and machine info."""

from __future__ import annotations

import math
import os
import platform
import random
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; `quick` for the smoke test and --quick."""

    ingest_requests: int
    scoring_events: int
    backtest_events: int
    orch_events: int
    timers: int
    sends: int
    memory_leads: int
    growth_leads: tuple[int, ...]
    e2e_seconds: float
    idle_seconds: float  # how long an idle worker's CPU is watched

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(ingest_requests=60, scoring_events=400, backtest_events=3000,
                       orch_events=200, timers=100, sends=30, memory_leads=2000,
                       growth_leads=(1000, 3000), e2e_seconds=3.0, idle_seconds=0.5)
        return cls(ingest_requests=1500, scoring_events=20000, backtest_events=200_000,
                   orch_events=3000, timers=1000, sends=300, memory_leads=100_000,
                   growth_leads=(10_000, 100_000, 1_000_000), e2e_seconds=15.0,
                   idle_seconds=10.0)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(pct(ms, 50), 2), "p99_ms": round(pct(ms, 99), 2),
            "mean_ms": round(statistics.fmean(ms), 2) if ms else 0.0}


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def compare(name: str, real: float, baseline: float, *, target: float | None, unit: str,
            baseline_name: str, higher_is_better: bool = True,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One comparison row: both absolute numbers, the ratio real/baseline and whether it meets
    `target` (a ratio; None = reported only)."""
    ratio = round(real / baseline, 3) if baseline else None
    met = None
    if target is not None and ratio is not None:
        met = ratio >= target if higher_is_better else ratio <= target
    return {"name": name, "unit": unit, "real": round(real, 2), "baseline": round(baseline, 2),
            "baseline_name": baseline_name, "ratio": ratio, "target_ratio": target,
            "higher_is_better": higher_is_better, "met": met, **(extra or {})}


def absolute(name: str, value: float | None, *, unit: str, target: float | None,
             higher_is_better: bool = True, extra: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """A row with an absolute target (no baseline), e.g. backtest events/s; `value` None when
    it could not be measured (then the target is not met)."""
    met = None
    if target is not None:
        met = value is not None and (value >= target if higher_is_better else value <= target)
    return {"name": name, "unit": unit,
            "real": round(value, 2) if value is not None else None, "baseline": None,
            "baseline_name": None, "ratio": None, "target": target,
            "higher_is_better": higher_is_better, "met": met, **(extra or {})}


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU time (user + system) process `pid` has used so far, from /proc (Linux; clock-tick
    resolution). With `children`, also what its children used: the ones it has reaped (the
    kernel adds them to its `cutime`/`cstime`) and the ones still running (PostgreSQL's
    backends under the postmaster)."""
    total = _ticks(pid, with_reaped=children)
    if children:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == pid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _ticks(pid: int, *, with_reaped: bool) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(f) for f in fields[11:15 if with_reaped else 13])


@dataclass(frozen=True)
class CpuMeter:
    """The CPU time of named processes over a stretch of work: `read()` before and after, then
    `per_event_us` (microseconds of CPU per event, each process and all together)."""

    pids: dict[str, int]
    trees: frozenset[str] = frozenset()  # names whose children count too (PostgreSQL)

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid, children=name in self.trees)
                for name, pid in self.pids.items()}

    @staticmethod
    def per_event_us(before: dict[str, float], after: dict[str, float], events: int
                     ) -> dict[str, float]:
        if not events:
            return {}
        used = {name: after[name] - before[name] for name in before}
        us = {name: round(seconds * 1e6 / events, 1) for name, seconds in used.items()}
        return {**us, "total": round(sum(used.values()) * 1e6 / events, 1)}


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.started


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "services"], cwd=ROOT,
                                    capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = None, False
    load = os.getloadavg()
    return {"commit": commit, "services_modified": dirty,
            "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load]}


# --- synthetic workload -----------------------------------------------------------------------

PAGES = ["/", "/pricing", "/docs/streaming", "/blog/kafka", "/customers", "/product"]
SENIORITY = ["individual_contributor", "manager", "director", "vp", "c_level"]
INDUSTRY = ["Software", "Retail", "Healthcare", "Financial Services", "Education"]


def events(n: int, leads: int, *, seed: int = 7, start: datetime | None = None,
           hot_share: float = 0.0) -> list[dict[str, Any]]:
    return list(iter_events(n, leads, seed=seed, start=start, hot_share=hot_share))


def iter_events(n: int, leads: int, *, seed: int = 7, start: datetime | None = None,
                hot_share: float = 0.0) -> Iterator[dict[str, Any]]:
    """`n` CloudEvents over `leads` leads in time order: profiles first, then page views, form
    submissions and downloads. With `hot_share`, that share of the events is a demo request
    by a senior lead (what moves a lead to mql and starts programs)."""
    rnd = random.Random(seed)  # noqa: S311 - a reproducible workload, not secrets
    t0 = start or datetime.now(UTC) - timedelta(days=1)
    run = uuid.uuid4().hex[:6]
    for i in range(n):
        lead = f"lead-{rnd.randrange(leads)}" if i >= leads else f"lead-{i}"
        when = (t0 + timedelta(seconds=i * 0.01)).isoformat()
        base = {"specversion": "1.0", "id": f"e{run}-{i}", "source": "https://www.example.com",
                "subject": lead, "time": when}
        roll = rnd.random()
        if i < leads:
            data: dict[str, Any] = {"email": f"{lead}@example.com",
                                    "seniority": rnd.choice(SENIORITY),
                                    "industry": rnd.choice(INDUSTRY),
                                    "company_size": rnd.choice([10, 80, 400, 9000])}
            yield {**base, "type": "crm.lead_upserted", "data": data}
        elif roll < hot_share:
            yield {**base, "type": "web.form_submitted",
                   "data": {"form_id": "demo", "form_type": "demo_request"}}
        elif roll < 0.8:
            path = rnd.choice(PAGES)
            yield {**base, "type": "web.page_viewed",
                   "data": {"url": f"https://www.example.com{path}", "path": path}}
        elif roll < 0.93:
            yield {**base, "type": "web.content_downloaded",
                   "data": {"content_id": "ebook-1", "title": "Streaming"}}
        else:
            yield {**base, "type": "web.form_submitted",
                   "data": {"form_id": "newsletter", "form_type": "newsletter"}}
