"""One fault run: stack up, peers and observer on, the load and the clock ticker running while
each fault is injected in turn (and the system restored), then the last waits are advanced,
the pipeline is given time to drain, and the figures are computed (deploy/chaos/tally.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.chaos.load import DAY, EVENTS_PER_LEAD, Load, advance_clock, tick_clock
from deploy.chaos.observe import Observer
from deploy.chaos.peers import HttpPeer, SmtpPeer
from deploy.chaos.processes import ADMIN_TOKEN, API_KEY, ChaosStack
from deploy.chaos.tally import FaultRecord, Observed, Plan, first_after, verdict

TOUCHES = 3
ALL_FAULTS = ("kill-ingest", "kill-scoring", "kill-orchestrator", "kill-dispatch",
              "broker-restart", "postgres-restart", "smtp-4xx", "http-500", "http-429",
              "http-refused", "http-timeout")
PIPELINE = ("accepted", "scored", "processed", "delivered")


@dataclass
class Options:
    out: Path
    rate: float = 2.0  # leads per second
    min_leads: int = 20
    hold: float = 8.0  # seconds a fault lasts before the restore
    gap: float = 6.0  # seconds of normal running between faults
    tick: float = 5.0  # seconds between clock advances of a day
    drain_timeout: float = 300.0
    faults: tuple[str, ...] = ALL_FAULTS
    log: Callable[[str], None] = print


@dataclass
class Run:
    opts: Options
    stack: ChaosStack
    smtp: SmtpPeer
    http: HttpPeer
    observer: Observer
    load: Load
    records: list[FaultRecord] = field(default_factory=list)

    def stage_times(self, stage: str) -> list[float]:
        return {"accepted": self.load.accepted_times, "scored": self.observer.scored_times,
                "processed": self.observer.processed_times,
                "delivered": self.smtp.received.times + self.http.received.times,
                "email": self.smtp.received.times,
                "webhook": self.http.received.times}[stage]

    async def inject(self, name: str) -> None:
        svc = {"kill-ingest": "ingest", "kill-scoring": "scoring-1",
               "kill-orchestrator": "orchestrator", "kill-dispatch": "dispatch"}
        peer_modes: dict[str, tuple[SmtpPeer | HttpPeer, str]] = {
            "smtp-4xx": (self.smtp, "tempfail"), "http-500": (self.http, "500"),
            "http-429": (self.http, "429"), "http-refused": (self.http, "refuse"),
            "http-timeout": (self.http, "hang")}
        started = time.monotonic()
        self.opts.log(f"[chaos] fault: {name}")
        if name in svc:
            await asyncio.to_thread(self.stack.services[svc[name]].kill9)
            await asyncio.sleep(self.opts.hold)
            await asyncio.to_thread(self.stack.restart, svc[name])
            watch: tuple[str, ...] = PIPELINE
        elif name == "broker-restart":
            await asyncio.to_thread(self.stack.kafka.stop)
            await asyncio.sleep(self.opts.hold)
            await asyncio.to_thread(self.stack.kafka.start)
            watch = PIPELINE
        elif name == "postgres-restart":
            await asyncio.to_thread(self.stack.pg.stop)
            await asyncio.sleep(self.opts.hold)
            await asyncio.to_thread(self.stack.pg.start)
            watch = PIPELINE
        else:
            peer, mode = peer_modes[name]
            await peer.set_mode(mode)
            await asyncio.sleep(self.opts.hold)
            await peer.set_mode("ok")
            watch = ("email",) if peer is self.smtp else ("webhook",)
        restored = time.monotonic()
        progress = await self._progress(watch, restored)
        record = FaultRecord(name, started, restored, progress)
        self.records.append(record)
        secs = record.recovery_seconds
        self.opts.log("[chaos]   restored; " + ("did not recover" if secs is None
                                                 else f"progress again after {secs:.1f} s"))

    async def _progress(self, stages: tuple[str, ...], since: float,
                        limit: float = 180.0) -> dict[str, float | None]:
        deadline = time.monotonic() + limit
        while True:
            seen = {s: first_after(self.stage_times(s), since) for s in stages}
            if all(v is not None for v in seen.values()) or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.25)


async def execute(opts: Options) -> dict[str, Any]:
    """The whole run; the figures (see tally.verdict) plus the run's settings."""
    opts.out.mkdir(parents=True, exist_ok=True)
    smtp, http = SmtpPeer(), HttpPeer()
    await smtp.start()
    await http.start()
    chaos = ChaosStack(opts.out, smtp_port=smtp.port, webhook_url=http.url)
    try:
        opts.log(f"[chaos] starting the stack under {opts.out} ...")
        await asyncio.to_thread(chaos.up)
        run = Run(opts, chaos, smtp, http, Observer(chaos.kafka.bootstrap, chaos.pg.url),
                  Load(chaos.ingest_url, API_KEY, uuid.uuid4().hex[:6], rate=opts.rate))
        return await _drive(run)
    finally:
        await asyncio.to_thread(chaos.down)
        await http.stop()
        await smtp.stop()


async def _drive(run: Run) -> dict[str, Any]:
    opts = run.opts
    observing = asyncio.create_task(run.observer.run())
    loading = asyncio.create_task(run.load.run(min_leads=opts.min_leads))
    ticking_stop = asyncio.Event()
    ticking = asyncio.create_task(tick_clock(run.stack.orchestrator_url, ADMIN_TOKEN,
                                             every=opts.tick, stop=ticking_stop))
    started = time.monotonic()
    try:
        for name in opts.faults:
            await asyncio.sleep(opts.gap)
            await run.inject(name)
            crashed = run.stack.check_alive()
            if crashed:
                raise RuntimeError(f"services died on their own: {crashed}")
        run.load.stop()
        await loading
        ticking_stop.set()
        await ticking
        opts.log(f"[chaos] load done: {len(run.load.leads)} leads; draining ...")
        await _drain(run)
    finally:
        run.load.stop()
        ticking_stop.set()
        run.observer.stop()
        await asyncio.gather(observing, loading, ticking, return_exceptions=True)
    figures = verdict(Plan(len(run.load.leads), EVENTS_PER_LEAD, TOUCHES), _observed(run))
    figures["settings"] = {"rate_leads_per_second": opts.rate, "hold_seconds": opts.hold,
                           "gap_seconds": opts.gap, "tick_seconds": opts.tick,
                           "scoring_workers": run.stack.scoring_workers,
                           "load_retries": run.load.retries,
                           "rejected": run.load.rejected,
                           "duration_seconds": round(time.monotonic() - started, 1)}
    return figures


async def _drain(run: Run) -> None:
    """Process everything accepted, then advance the clock a day at a time (each time waiting
    until the dispatch commands stop coming) until every touch is planned; wait for every
    expected message (or the timeout), then a settle period in which late duplicates would
    still show."""
    expected = len(run.load.leads) * TOUCHES
    accepted = set(run.load.accepted)
    deadline = time.monotonic() + run.opts.drain_timeout
    await _until(lambda: accepted <= set(run.observer.processed), deadline - time.monotonic())
    while len(run.observer.planned) < expected and time.monotonic() < deadline:
        await advance_clock(run.stack.orchestrator_url, ADMIN_TOKEN, DAY)
        before = -1
        while before != len(run.observer.planned) and time.monotonic() < deadline:
            before = len(run.observer.planned)
            await asyncio.sleep(3)  # quiet for 3 s: this day's touches are all planned

    def received() -> bool:
        return len(set(run.smtp.received.ids) | set(run.http.received.ids)) >= expected
    await _until(received, deadline - time.monotonic())
    await asyncio.sleep(5)  # not synchronization: a window for late redeliveries to show up


async def _until(check: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.5)
    return False


def _observed(run: Run) -> Observed:
    load_keys = set(run.load.accepted)
    return Observed(
        accepted=load_keys, scored=set(run.observer.scored) & load_keys,
        processed=set(run.observer.processed) & load_keys,
        expected_messages=set(run.observer.planned),
        received=run.smtp.received.ids + run.http.received.ids,
        dead_letters=dict(run.observer.dead_letters), faults=run.records,
        scored_records=sum(n for k, n in run.observer.scored_records.items() if k in load_keys))
