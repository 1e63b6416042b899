"""One endurance run: the fault run's stack, load, peers, observer and kubelet
(deploy/chaos/scenario.py) for `minutes`, a fault every `fault_every` seconds (the chaos
faults, in turn), and all along a sample every `sample_every` seconds (memory of every process,
rows of every table, consumer lag, latency of the messages received since the last sample)
written to `series.jsonl`; then the fault run's drain and counting, and the verdict
(deploy/soak/report.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from deploy.chaos.load import EVENTS_PER_LEAD, lead_events
from deploy.chaos.processes import DispatchTimings
from deploy.chaos.scenario import QUICK_TIMINGS, Options, Run, drive, started
from deploy.soak.measures import Lags, Point, caught_up, latencies, window
from deploy.soak.probes import LagProbe, memory, row_counts, waiting
from deploy.soak.rate import FALLBACK
from deploy.soak.report import Fault, judge, schedule
from services.common.config.durations import parse_duration

PROGRAM = Path(__file__).resolve().parent / "config" / "programs" / "soak-series.yaml"
FAULTS = ("kill-ingest", "kill-scoring", "kill-orchestrator", "kill-dispatch",
          "broker-restart", "postgres-restart")
LAG_POLL = 2.0  # seconds between lag readings (samples take the latest)
FINAL_LAG_WAIT = 60.0  # seconds the groups get, after the drain, to commit their last offsets


@dataclass
class SoakOptions:
    out: Path
    minutes: float = 30.0
    fault_every: float = 300.0  # seconds
    rate: float = FALLBACK  # leads per second
    hold: float = 10.0  # seconds a fault lasts before the restore
    sample_every: float = 10.0
    faults: tuple[str, ...] = FAULTS
    retention: float = 300.0  # seconds the services keep rows that only serve dedupe/history
    prune_every: float = 60.0  # seconds between their prune rounds
    lag_bound: float = 120.0  # seconds after a restore by which lag must be back
    lag_grace: float = 5.0  # seconds of load a caught-up group may trail by (commit intervals)
    drain_timeout: float = 600.0
    timings: DispatchTimings = field(default_factory=DispatchTimings)
    log: Callable[[str], None] = print

    @property
    def duration(self) -> float:
        return self.minutes * 60

    @property
    def lag_tolerance(self) -> int:
        """Records a group may be behind and still count as caught up while the load runs:
        what the load produces in `lag_grace` seconds (committed offsets trail by up to a
        commit interval). At the end, with the load stopped, the lag must be zero."""
        return max(1, math.ceil(self.rate * EVENTS_PER_LEAD * self.lag_grace))

    def service_env(self) -> dict[str, str]:
        """The retention settings of dispatch and the orchestrator (days may be fractional)."""
        days = f"{self.retention / 86400:.8g}"
        every = f"{self.prune_every:g}"
        return {"NURTURE_DISPATCH_RETENTION_DAYS": days,
                "NURTURE_ORCHESTRATOR_RETENTION_DAYS": days,
                "NURTURE_DISPATCH_PRUNE_INTERVAL_SECONDS": every,
                "NURTURE_ORCHESTRATOR_PRUNE_INTERVAL_SECONDS": every}

    def chaos(self) -> Options:
        """The fault run's options for this run: no minimum of leads, no gap (the soak keeps
        its own schedule), the clock never moved while the load runs (the program waits on
        the real clock)."""
        return Options(out=self.out, rate=self.rate, min_leads=0, hold=self.hold, gap=0.0,
                       tick=0.0, drain_timeout=self.drain_timeout, faults=self.faults,
                       timings=self.timings, log=self.log, program=PROGRAM)


def small(out: Path, log: Callable[[str], None] = print) -> SoakOptions:
    """The in-suite size (`--small`): two minutes at 1 lead/s, kill -9 of dispatch and of the
    orchestrator, 30 s retention pruned every 5 s, a sample every 2 s."""
    return replace(SoakOptions(out=out, log=log), minutes=2.0, fault_every=60.0, rate=1.0,
                   hold=3.0, sample_every=2.0, faults=("kill-dispatch", "kill-orchestrator"),
                   retention=30.0, prune_every=5.0, lag_bound=60.0, drain_timeout=240.0,
                   timings=QUICK_TIMINGS)


def step_offsets(path: Path = PROGRAM) -> dict[str, float]:
    """Seconds from a lead's trigger to each send step: the waits before it."""
    waited, offsets = 0.0, {}
    for step in yaml.safe_load(path.read_text())["steps"]:
        if "wait" in step:
            waited += parse_duration(step["wait"])
        elif "send" in step:
            offsets[str(step["id"])] = waited
    return offsets


def _key(lead: str) -> str:
    first = lead_events(lead)[0]
    return f"{first['source']}\x1f{first['id']}"


@dataclass
class Watch:
    """What the run records while it runs, in seconds from the start of the load."""

    run: Run
    opts: SoakOptions
    probe: LagProbe
    t0: float = 0.0
    load_end: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    lag_points: list[tuple[float, Lags | None]] = field(default_factory=list)
    offsets: dict[str, float] = field(default_factory=step_offsets)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def faults(self, run: Run) -> None:
        """The fault plan given to chaos's `drive`: the load has just started."""
        self.t0 = time.monotonic()
        self._tasks = [asyncio.create_task(self._poll_lag()),
                       asyncio.create_task(self._sampling())]
        for at, name in schedule(self.opts.duration, self.opts.fault_every, self.opts.faults):
            await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))
            await run.inject(name)
            await run.assert_alive()
        await asyncio.sleep(max(0.0, self.t0 + self.opts.duration - time.monotonic()))
        self.load_end = self.now()
        self.opts.log(f"[soak] load done after {self.load_end:.0f} s: "
                      f"{len(run.load.leads)} leads")

    async def final_lag(self) -> Lags | None:
        """The groups' lag once the drain is done: zero, or the last reading after waiting."""
        deadline = time.monotonic() + FINAL_LAG_WAIT
        lags = await self.probe.read()
        while not caught_up(lags, 0) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            lags = await self.probe.read()
        await self.sample()
        return lags

    async def close(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.probe.close()

    def latency(self) -> list[Point]:
        run = self.run
        accepted = {lead: at for lead in run.load.leads
                    if (at := run.load.accepted.get(_key(lead))) is not None}
        received = run.smtp.received.items + run.http.received.items
        return [(at - self.t0, secs) for at, secs in
                latencies(received, run.observer.planned, accepted, self.offsets)]

    async def sample(self) -> None:
        run, t = self.run, self.now()
        rows = await row_counts(run.stack.pg.url)
        rss = await asyncio.to_thread(memory, run.stack)
        prev = self.samples[-1]["t"] if self.samples else -math.inf
        lat = window([(at, s * 1000) for at, s in self.latency()], prev, t)
        sample = {
            "t": round(t, 1), "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "phase": "load" if self.load_end is None else "drain", "rss": rss, "rows": rows,
            "lag": self.lag_points[-1][1] if self.lag_points else None,
            "backlog": await waiting(run.stack.pg.url),
            "counts": {"accepted": len(run.load.accepted),
                       "scored": len(run.load.accepted.keys() & run.observer.scored.keys()),
                       "processed": len(run.load.accepted.keys() & run.observer.processed.keys()),
                       "planned": len(run.observer.planned),
                       "received": len(run.smtp.received.items) + len(run.http.received.items)},
            "latency_ms": lat}
        self.samples.append(sample)
        _write(self.opts.out / "series.jsonl", [sample], "a")

    async def _sampling(self) -> None:
        n = 0
        while not self._stop.is_set():
            await self.sample()
            if n % max(1, round(60 / self.opts.sample_every)) == 0:
                self.opts.log(_progress(self.samples[-1], self.opts.sample_every))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.opts.sample_every)

    async def _poll_lag(self) -> None:
        while not self._stop.is_set():
            self.lag_points.append((round(self.now(), 1), await self.probe.read()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), LAG_POLL)


def _write(path: Path, docs: list[dict[str, Any]], mode: str) -> None:
    """JSON lines (a few hundred bytes a sample: written from the event loop)."""
    with open(path, mode) as f:
        f.writelines(json.dumps(doc) + "\n" for doc in docs)


def _progress(sample: dict[str, Any], every: float) -> str:
    counts, lag, lat = sample["counts"], sample["lag"], sample["latency_ms"]
    behind = "?" if lag is None else sum(lag.values())
    p99 = "-" if lat["p99"] is None else f"{lat['p99']:.0f} ms"
    return (f"[soak] {sample['t'] / 60:5.1f} min  accepted {counts['accepted']}  received "
            f"{counts['received']}  lag {behind}  p99 {p99} (last {every:g} s)")


async def soak(opts: SoakOptions) -> dict[str, Any]:
    """The whole run; the verdict's figures (report.judge) plus the run's settings."""
    (opts.out / "series.jsonl").unlink(missing_ok=True)
    async with started(opts.chaos(), env=opts.service_env()) as run:
        watch = Watch(run, opts, LagProbe(run.stack.kafka.bootstrap))
        try:
            counts = await drive(run, watch.faults)
            final = await watch.final_lag()
        finally:
            await watch.close()
    load_end = watch.load_end if watch.load_end is not None else watch.now()
    faults = [Fault(r.name, r.started_at - watch.t0, r.restored_at - watch.t0,
                    None if r.recovery_seconds is None else round(r.recovery_seconds, 1))
              for r in run.records]
    figures = judge(counts, samples=watch.samples, lag_points=watch.lag_points, faults=faults,
                    load=(0.0, load_end), final_lag=final, latency=watch.latency(),
                    lag_tolerance=opts.lag_tolerance, lag_bound=opts.lag_bound)
    _write(opts.out / "lag.jsonl", [{"t": t, "lag": lags} for t, lags in watch.lag_points], "w")
    figures["settings"] = {
        "minutes": opts.minutes, "load_seconds": round(load_end, 1),
        "rate_leads_per_second": opts.rate, "fault_every_seconds": opts.fault_every,
        "hold_seconds": opts.hold, "faults": list(opts.faults),
        "sample_every_seconds": opts.sample_every, "retention_seconds": opts.retention,
        "prune_every_seconds": opts.prune_every, "lag_bound_seconds": opts.lag_bound,
        "lag_grace_seconds": opts.lag_grace, "service_env": opts.service_env(),
        "samples": len(watch.samples)}
    return figures
