"""`make demo`: a simulated population through the real Nurture stack, then a funnel report.

  python -m deploy.demo [--leads 2000] [--days 75] [--seed 7] [--step-hours 6] [--out .local/demo]

Starts (or reuses) the broker and database like `make run`, runs scoring, orchestrator and
dispatch with this run's own topics and schemas, drives the population (driver.py), and writes
report.json, report.md and funnel.png under --out."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from deploy.demo import chart, infra, report
from deploy.demo.driver import Endpoints, OffsetClock, Simulation
from deploy.demo.personas import population
from deploy.demo.settle import Settler
from deploy.demo.sinks import crm_app, serve, smtp_sink
from deploy.local import run as local_run
from services.common.config.settings import KafkaSettings, load
from services.common.observability.logging import configure_logging
from services.common.tracking import TrackingSettings
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import IngestSettings

DEMO_KEY = local_run.DEV_KEY
# a fresh connection per request: the services close idle keep-alive connections after 5 s, and
# a request racing that close fails (settling often takes longer than 5 s)
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=2000)
    ap.add_argument("--days", type=int, default=75)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--step-hours", type=float, default=6.0,
                    help="simulated hours per step (the clock moves by this much)")
    ap.add_argument("--out", type=Path, default=Path(".local/demo"))
    ap.add_argument("--hold", action="store_true",
                    help="keep the services up after the report (for Prometheus / Grafana)")
    ap.add_argument("--settle-timeout", type=float, default=600.0,
                    help="seconds to wait for the pipeline to catch up after a step")
    return ap.parse_args(argv)


async def wait_ready(client: httpx.AsyncClient, urls: list[str], demo: infra.DemoEnv,
                     procs: dict[str, Any], limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        infra.check_alive(procs, demo.logs)
        codes = []
        for url in urls:
            try:
                codes.append((await client.get(url)).status_code)
            except httpx.HTTPError:
                codes.append(0)
        if all(c == 200 for c in codes) and infra.scoring_ready(demo.logs):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"services not ready after {limit:.0f}s (logs in {demo.logs})")


def route_logs(path: Path) -> None:
    """Ingest runs in this process: its JSON log lines go to a file like the other services'."""
    configure_logging("ingest", fmt="json")
    log_file = path.open("a")  # closed at exit, with the process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_file)


def say(line: str) -> None:
    print(line, flush=True)


async def run_demo(args: argparse.Namespace, demo: infra.DemoEnv,
                   progress: Any = say) -> dict[str, Any]:
    wall = time.monotonic()
    progress(f"[demo] run {demo.run_id}: topics {demo.prefix}*, schema "
             f"{demo.orchestrator_schema}, logs in {demo.logs}")
    infra.write_prometheus_config(demo, args.out / "prometheus.yml")
    procs = infra.start_children(demo)
    engine = create_async_engine(demo.env["DATABASE_URL"], pool_size=2)
    clock = OffsetClock()
    tasks: list[dict[str, Any]] = []
    ingest_app = create_app(bootstrap_ingest(load(IngestSettings), load(KafkaSettings), clock=clock,
                                             tracking_keys=load(TrackingSettings).keys()))
    ports = demo.ports
    settler = Settler(bootstrap=demo.env["KAFKA_BOOTSTRAP_SERVERS"], prefix=demo.prefix,
                      engine=engine, orchestrator_schema=demo.orchestrator_schema,
                      dispatch_schema=demo.dispatch_schema)
    try:
        async with smtp_sink(ports.smtp) as mailbox, serve(ingest_app, ports.ingest) as ingest, \
                serve(crm_app(tasks), ports.crm), httpx.AsyncClient(
                    timeout=60, limits=NO_KEEPALIVE) as client:
            orch = f"http://127.0.0.1:{ports.orchestrator}"
            await wait_ready(client, [f"{ingest}/readyz", f"{orch}/readyz",
                                      f"http://127.0.0.1:{ports.dispatch}/readyz"], demo, procs)
            await settler.start()
            leads = population(args.leads, args.days, args.seed)
            sim = Simulation(leads=leads, days=args.days, seed=args.seed,
                             step_hours=args.step_hours, client=client, clock=clock,
                             settler=settler, mailbox=mailbox, tasks=tasks,
                             settle_timeout=args.settle_timeout, endpoints=Endpoints(
                                 ingest, orch, DEMO_KEY,
                                 demo.env["NURTURE_ORCHESTRATOR_ADMIN_TOKEN"]))
            ledger = await sim.run(progress)
            run = {"leads": args.leads, "days": args.days, "seed": args.seed,
                   "step_hours": args.step_hours, "run_id": demo.run_id,
                   "wall_seconds": time.monotonic() - wall}
            rep = await report.collect(
                client=client, orchestrator=orch, engine=engine,
                token=demo.env["NURTURE_ORCHESTRATOR_API_TOKEN"],
                schema=demo.orchestrator_schema, ledger=ledger, leads=leads, run=run,
                metrics={"orchestrator": f"{orch}/metrics",
                         "dispatch": f"http://127.0.0.1:{ports.dispatch}/metrics",
                         "scoring": f"http://127.0.0.1:{ports.scoring_metrics}/metrics",
                         "ingest": f"{ingest}/metrics"})
            progress(write(rep, args.out))
            if args.hold:
                progress(f"[demo] services still up (ingest {ingest}, orchestrator {orch}, "
                         f"scrape config {args.out / 'prometheus.yml'}); Ctrl-C stops them")
                with contextlib.suppress(asyncio.CancelledError):  # Ctrl-C: see guarded()
                    await asyncio.Event().wait()
            return rep
    finally:
        await settler.stop()
        await engine.dispose()
        infra.stop_children(procs)


async def guarded(args: argparse.Namespace, demo: infra.DemoEnv) -> None:
    """run_demo, cancelled cleanly (services stopped) by SIGINT or SIGTERM."""
    task = asyncio.current_task()
    assert task is not None
    got: list[int] = []

    def on_signal(sig: int) -> None:
        got.append(sig)
        task.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await run_demo(args, demo)
    except asyncio.CancelledError:
        raise RuntimeError(f"stopped by signal {', '.join(map(str, got))}") from None


def write(rep: dict[str, Any], out: Path) -> str:
    md = report.markdown(rep)
    (out / "report.md").write_text(md)
    (out / "report.json").write_text(json.dumps(rep, indent=2, default=str))
    chart.draw(rep, out / "funnel.png")
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        demo = infra.prepare(args.out, args.days)
        route_logs(demo.logs / "ingest.log")
        asyncio.run(guarded(args, demo))
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:  # StackError: RuntimeError
        print(f"[demo] failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"[demo] report.md, report.json and funnel.png in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
