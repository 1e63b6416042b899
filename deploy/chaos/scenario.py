"""One fault run: stack up, peers and observer on, the load and the clock ticker running while
each fault is injected in turn (and the system restored), then the last waits are advanced,
the pipeline is drained until the services' tables say nothing more will be sent (and a
window for late resends has passed), and the figures are computed (deploy/chaos/tally.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.chaos.load import DAY, EVENTS_PER_LEAD, Load, advance_clock, tick_clock
from deploy.chaos.observe import Backlog, Observer, backlog
from deploy.chaos.peers import HttpPeer, SmtpPeer
from deploy.chaos.processes import ADMIN_TOKEN, API_KEY, CONFIG, ChaosStack, DispatchTimings
from deploy.chaos.tally import FaultRecord, Observed, Plan, first_after, verdict

PROGRAM = CONFIG / "programs" / "chaos-series.yaml"
ALL_FAULTS = ("kill-ingest", "kill-scoring", "kill-orchestrator", "kill-dispatch",
              "broker-restart", "postgres-restart", "smtp-4xx", "smtp-refused", "smtp-timeout",
              "http-500", "http-429", "http-refused", "http-timeout")
PIPELINE = ("accepted", "scored", "processed", "delivered")
# a quick run's (`--small`, the in-suite one): shorter, so the window for late resends is too;
# still above the SMTP and HTTP timeouts, as dispatch requires
QUICK_TIMINGS = DispatchTimings(sending_timeout=6.0, lease=6.0, recovery_poll=1.0)


def program_steps(path: Path = PROGRAM) -> tuple[tuple[str, str], ...]:
    """The send steps of the run's program, (step id, channel): one message each per lead."""
    doc = yaml.safe_load(path.read_text())
    return tuple((str(step["id"]), str(step["send"]["channel"]))
                 for step in doc["steps"] if "send" in step)


@dataclass
class Options:
    out: Path
    rate: float = 2.0  # leads per second
    min_leads: int = 20
    hold: float = 8.0  # seconds a fault lasts before the restore
    gap: float = 6.0  # seconds of normal running between faults
    tick: float = 5.0  # seconds between clock advances of a day; 0: the clock is not moved
    drain_timeout: float = 300.0
    faults: tuple[str, ...] = ALL_FAULTS
    timings: DispatchTimings = field(default_factory=DispatchTimings)
    log: Callable[[str], None] = print
    program: Path = PROGRAM  # the one program the orchestrator runs (its directory is loaded)


@dataclass
class Run:
    opts: Options
    stack: ChaosStack
    smtp: SmtpPeer
    http: HttpPeer
    observer: Observer
    load: Load
    records: list[FaultRecord] = field(default_factory=list)
    liveness_restarts: list[str] = field(default_factory=list)
    restarting: asyncio.Lock = field(default_factory=asyncio.Lock)  # faults vs the kubelet

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
            "smtp-4xx": (self.smtp, "tempfail"), "smtp-refused": (self.smtp, "refuse"),
            "smtp-timeout": (self.smtp, "hang"), "http-500": (self.http, "500"),
            "http-429": (self.http, "429"), "http-refused": (self.http, "refuse"),
            "http-timeout": (self.http, "slow")}
        started = time.monotonic()
        self.opts.log(f"[chaos] fault: {name}")
        if name in svc:
            async with self.restarting:
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

    async def assert_alive(self) -> None:
        """Raise if a service died on its own (a crash, not one of the run's kills)."""
        async with self.restarting:
            crashed = self.stack.check_alive()
        if crashed:
            raise RuntimeError(f"services died on their own: {crashed}")

    async def kubelet(self, stop: asyncio.Event, every: float = 2.0,
                      failures: int = 3) -> None:
        """What Kubernetes does with a liveness probe: a service whose probe fails `failures`
        times in a row is killed and started again (the scoring workers' /livez,
        services/scoring/entrypoints/probes.py). Probes are read between faults' restarts,
        never during."""
        failed: dict[str, int] = {}
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            async with self.restarting:
                unlive = await asyncio.to_thread(self.stack.unlive)
                failed = {name: failed.get(name, 0) + 1 for name in unlive}
                for name, count in failed.items():
                    if count < failures:
                        continue
                    self.opts.log(f"[chaos] liveness: {name} ({unlive[name]}); restarting it")
                    await asyncio.to_thread(self.stack.services[name].kill9)
                    await asyncio.to_thread(self.stack.restart, name)
                    self.liveness_restarts.append(name)
                    failed[name] = 0

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
    async with started(opts) as run:
        return await drive(run)


@contextlib.asynccontextmanager
async def started(opts: Options, *,
                  env: Mapping[str, str] | None = None) -> AsyncIterator[Run]:
    """Peers and stack up (`env`: added to every service's environment), a Run on them (its
    load, observer and faults not started yet); everything stopped on the way out."""
    opts.out.mkdir(parents=True, exist_ok=True)
    smtp, http = SmtpPeer(), HttpPeer()
    await smtp.start()
    await http.start()
    chaos = ChaosStack(opts.out, smtp_port=smtp.port, webhook_url=http.url,
                       timings=opts.timings, programs=opts.program.parent,
                       extra_env=dict(env or {}))
    try:
        opts.log(f"[chaos] starting the stack under {opts.out} ...")
        await asyncio.to_thread(chaos.up)
        yield Run(opts, chaos, smtp, http, Observer(chaos.kafka.bootstrap, chaos.pg.url),
                  Load(chaos.ingest_url, API_KEY, uuid.uuid4().hex[:6], rate=opts.rate))
    finally:
        await asyncio.to_thread(chaos.down)
        await http.stop()
        await smtp.stop()


async def in_turn(run: Run) -> None:
    """The fault run's schedule: each of `opts.faults` after `opts.gap` seconds of normal
    running, the system restored after each."""
    for name in run.opts.faults:
        await asyncio.sleep(run.opts.gap)
        await run.inject(name)
        await run.assert_alive()


async def drive(run: Run, faults: Callable[[Run], Awaitable[None]] = in_turn) -> dict[str, Any]:
    """Observer, load, clock ticker and kubelet running while `faults` runs; then the load
    stops, the pipeline is drained and counted. The stack stays up (see `started`)."""
    opts = run.opts
    observing = asyncio.create_task(run.observer.run())
    loading = asyncio.create_task(run.load.run(min_leads=opts.min_leads))
    ticking_stop = asyncio.Event()
    ticking = asyncio.create_task(  # tick 0: no ticker, a task that only awaits the stop
        tick_clock(run.stack.orchestrator_url, ADMIN_TOKEN, every=opts.tick, stop=ticking_stop)
        if opts.tick > 0 else ticking_stop.wait())
    kubelet_stop = asyncio.Event()
    kubelet = asyncio.create_task(run.kubelet(kubelet_stop))
    started = time.monotonic()
    try:
        await faults(run)
        run.load.stop()
        await loading
        ticking_stop.set()
        await ticking
        opts.log(f"[chaos] load done: {len(run.load.leads)} leads; draining ...")
        plan = Plan(tuple(run.load.leads), EVENTS_PER_LEAD, program_steps(opts.program))
        await drain(run, plan)
    finally:
        run.load.stop()
        ticking_stop.set()
        run.observer.stop()
        kubelet_stop.set()
        await asyncio.gather(observing, loading, ticking, kubelet, return_exceptions=True)
    figures = verdict(plan, observed(run))
    figures["settings"] = {"rate_leads_per_second": opts.rate, "hold_seconds": opts.hold,
                           "gap_seconds": opts.gap, "tick_seconds": opts.tick,
                           "settle_seconds": opts.timings.late_window,
                           "dispatch_timings": opts.timings.env(),
                           "scoring_workers": run.stack.scoring_workers,
                           "load_retries": run.load.retries,
                           "liveness_restarts": run.liveness_restarts,
                           "rejected": run.load.rejected,
                           "duration_seconds": round(time.monotonic() - started, 1)}
    return figures


async def drain(run: Run, plan: Plan) -> None:
    """Wait until every accepted event is processed; advance the clock a day at a time (each
    time until the orchestrator has no due timer and an empty outbox) until every touch is
    planned; wait until dispatch has a final status for every planned message and both outboxes
    are empty; then, for late resends, a window as long as the longest path of one (an attempt
    interrupted mid-send, recovered and sent again: DispatchTimings.late_window), and the same
    wait again. Each wait is a condition with the drain's deadline; one that runs out is logged
    and the counts show what is missing."""
    opts = run.opts
    accepted = set(run.load.accepted)
    deadline = time.monotonic() + opts.drain_timeout
    url = run.stack.pg.url

    async def state() -> Backlog | None:
        # a message a peer already has needs no delivery row any more (dispatch may have
        # pruned it after its retention): only the others must have one
        have = {d.message_id for d in run.smtp.received.deliveries + run.http.received.deliveries}
        return await backlog(url, set(run.observer.planned) - have)

    async def orchestrator_idle() -> bool:
        b = await state()
        return b is not None and not b.outbox and not b.due_timers

    async def planned() -> bool:
        return len(run.observer.planned) >= plan.messages

    async def idle() -> bool:
        b = await state()
        return b is not None and b.idle

    if not await _until(lambda: accepted <= set(run.observer.processed),
                        deadline - time.monotonic()):
        opts.log(f"[chaos] {len(accepted - set(run.observer.processed))} accepted events "
                 "were never processed")
    while not await planned() and time.monotonic() < deadline:
        await advance_clock(run.stack.orchestrator_url, ADMIN_TOKEN, DAY)
        await _until_async(orchestrator_idle, deadline - time.monotonic())
        b = await state()
        if b is not None and b.timers == 0:  # nothing is waiting: the rest is on its way
            await _until_async(planned, min(30.0, deadline - time.monotonic()))
            break
    if not await _until_async(idle, deadline - time.monotonic()):
        opts.log(f"[chaos] the pipeline did not go idle: {await state()}")
    opts.log(f"[chaos] idle; watching {opts.timings.late_window:.1f} s for late resends ...")
    await asyncio.sleep(opts.timings.late_window)  # a window for late resends, not a sync
    if not await _until_async(idle, max(30.0, deadline - time.monotonic())):
        opts.log(f"[chaos] the pipeline did not go idle again: {await state()}")


async def _until(check: Callable[[], bool], limit: float) -> bool:
    async def acheck() -> bool:
        return check()
    return await _until_async(acheck, limit)


async def _until_async(check: Callable[[], Awaitable[bool]], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)


def observed(run: Run) -> Observed:
    load_keys = set(run.load.accepted)
    return Observed(
        accepted=load_keys, scored=set(run.observer.scored) & load_keys,
        processed=set(run.observer.processed) & load_keys,
        planned=dict(run.observer.planned),
        received=run.smtp.received.deliveries + run.http.received.deliveries,
        dead_letters=dict(run.observer.dead_letters), faults=run.records,
        scored_records=sum(n for k, n in run.observer.scored_records.items() if k in load_keys))
