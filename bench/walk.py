"""`python -m bench.walk [--out FILE.json] [--workdir DIR]`: measure the walk of one lead id
from `POST /v1/events` to the SMTP send (#14) from real execution.

The whole stack runs as in the end-to-end benchmark (bench/e2e.py: its own broker and database
unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are set, the loopback SMTP peer, the benchmark
program that answers an owner-level profile with one email at once), each service under the
tracer bench/walktrace.py, which records every call into `services/` or `schemas/`. The idle
loops' intervals are set long (timers, retries, recovery, relay fallback, retention), so an
idle stack makes few calls.

After WARM_LEADS warm-up sends (lazy start-up work out of the way) and a quiet stretch, one
event for a fresh lead is posted; the measured window runs from just before the POST to the
SMTP peer's receipt of that lead's message. An idle window of the same length right before the
POST is the noise baseline: the report gives each figure raw, with the idle window's multiset
of (caller function -> callee function) edges subtracted, and without the idle stack's own
tasks (a task that made calls in the idle stretch and nothing new in the window: timers,
gauges; a window as short as the walk, ~0.1-0.2 s, rarely catches them, so the subtraction
alone leaves them in). The modules and callbacks printed are of that last figure.

Per service and in total: project calls (call events), module visits (calls whose callee module
differs from the nearest project caller's, plus each root entry: a call with no project caller,
from the event loop, a library or another task), distinct modules (callee modules; in the
total, shared modules once), and callbacks: a call into module M from module B while M is
lower on the project stack below B (A -> ... -> B -> A; a generator made in M and first
iterated in B counts, and is marked). The stack is one task's await chain (a hand-off to
another task through an event or a queue is a root entry there, not a callback)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import e2e
from bench.core import ROOT
from bench.infra import Infra, child, free_port, http_ready, infrastructure, poll
from bench.servers import KEY

WARM_LEADS = 2
QUIET_SECONDS = 3.0  # the idle rate this long: the warm-up's tail is through
QUIET_CALLS_PER_S = 100  # an idle stack makes about 35 (scoring's timers, the consumers' polls)
SETTLE_SECONDS = 10.0  # then this long idle before the POST (holds the idle window)
SEND_WITHIN = 180.0
LONG = "600"  # seconds, for every idle loop interval that has a setting
ROOT_CALLER = "<root>"
VARIANTS = ("raw", "minus_idle", "minus_idle_tasks", "idle")
SERVICES = ("ingest", "scoring", "orchestrator", "dispatch")

Row = list[Any]  # bench/walktrace.py: t, thread, task, module, qualname, caller module,
# caller qualname, stack, kind


def log(message: str) -> None:
    print(f"walk: {message}", file=sys.stderr, flush=True)


def stack_env(infra: Infra, kafka: Any, ports: dict[str, int]) -> dict[str, str]:
    """bench/e2e.py's environment, with the idle loops' intervals long."""
    quiet = {f"NURTURE_ORCHESTRATOR_{name}": LONG for name in (
        "TIMER_POLL_SECONDS", "RELAY_IDLE_SECONDS", "PRUNE_INTERVAL_SECONDS")}
    quiet |= {f"NURTURE_DISPATCH_{name}": LONG for name in (
        "POLL_SECONDS", "RECOVERY_POLL_SECONDS", "RELAY_IDLE_SECONDS",
        "PRUNE_INTERVAL_SECONDS")}
    return e2e.stack_env(infra, kafka, ports, "walk") | quiet


def service_args(ports: dict[str, int]) -> dict[str, tuple[list[str], str]]:
    """Each service's command line (as bench/e2e.py starts it) and its readiness URL."""
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return {"ingest": (["-m", "bench.servers", "ingest", str(ports["ingest"])],
                       f"{url['ingest']}/readyz"),
            "scoring": (["-m", "services.scoring", "worker"], f"{url['m']}/metrics"),
            "orchestrator": (["-m", "services.orchestrator", "serve", "--migrate"],
                             f"{url['orch']}/readyz"),
            "dispatch": (["-m", "services.dispatch", "serve", "--migrate"],
                         f"{url['dispatch']}/readyz")}


@asynccontextmanager
async def traced_stack(infra: Infra, traces: Path) -> AsyncIterator[dict[str, str]]:
    """The SMTP peer and the four services (each under bench.walktrace), stopped at the end;
    yields the ingest and peer URLs."""
    kafka = await infra.kafka(partitions=2)
    ports = {name: free_port() for name in ("ingest", "orch", "dispatch", "smtp", "http", "m")}
    env = stack_env(infra, kafka, ports)
    peer = f"http://127.0.0.1:{ports['http']}"
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(child(
            ["-m", "bench.peers", str(ports["smtp"]), str(ports["http"])], env,
            infra.workdir / "walk-peers.log", http_ready(f"{peer}/received")))
        for name, (args, ready) in service_args(ports).items():
            log(f"starting {name} (traced)")
            await stack.enter_async_context(child(
                ["-m", "bench.walktrace", str(traces / f"{name}.jsonl"), *args], env,
                infra.workdir / f"walk-{name}.log", http_ready(ready), within=300))
        yield {"ingest": f"http://127.0.0.1:{ports['ingest']}", "peer": peer}
        log("stopping the stack")


def hot_event(lead: str) -> dict[str, Any]:
    """A profile upsert of a new owner-level lead: the benchmark program's one email."""
    return {"specversion": "1.0", "id": f"{lead}-upsert", "source": "https://www.example.com",
            "subject": lead, "type": "crm.lead_upserted",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {"email": f"{lead}@example.com", "seniority": "owner"}}


async def send_one(urls: dict[str, str], lead: str) -> tuple[float, float]:
    """POST one event for `lead`; (time just before the POST, the SMTP peer's receipt)."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/cloudevents+json"}
    body = orjson.dumps(hot_event(lead))
    arrived: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        start = time.time()
        r = await client.post(f"{urls['ingest']}/v1/events", content=body, headers=headers)
        if r.status_code != 202:
            raise RuntimeError(f"POST /v1/events answered {r.status_code}: {r.text[:500]}")

        async def received() -> bool:
            doc = (await client.get(f"{urls['peer']}/received")).json()
            arrived.update({who: t for t, who in doc["arrivals"] if who == lead})
            return lead in arrived
        await poll(received, within=SEND_WITHIN, what=f"the email to {lead}", every=0.05)
    return start, arrived[lead]


def trace_lines(traces: Path, offsets: dict[Path, int]) -> int:
    """Rows appended to the traces since `offsets` (which are moved on)."""
    added = 0
    for path in traces.glob("*.jsonl"):
        with path.open("rb") as f:
            f.seek(offsets.get(path, 0))
            chunk = f.read()
        offsets[path] = offsets.get(path, 0) + len(chunk)
        added += chunk.count(b"\n")
    return added


async def quiet(traces: Path) -> None:
    """Until the services together record fewer than QUIET_CALLS_PER_S project calls a second
    over QUIET_SECONDS (the idle loops' steady rate, once the warm-up's tail is through; the
    traces are flushed every quarter second)."""
    offsets: dict[Path, int] = {}
    trace_lines(traces, offsets)
    seen: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])

    def still() -> bool:
        now = time.monotonic()
        seen.append((now, seen[-1][1] + trace_lines(traces, offsets)))
        while len(seen) > 1 and seen[1][0] <= now - QUIET_SECONDS:
            seen.popleft()
        span = now - seen[0][0]
        return span >= QUIET_SECONDS and seen[-1][1] - seen[0][1] < QUIET_CALLS_PER_S * span
    await poll(still, within=300, what="the stack to go quiet", every=0.25)


async def drive(urls: dict[str, str], traces: Path) -> dict[str, float]:
    """Warm up, wait for quiet, idle SETTLE_SECONDS, then the measured send."""
    for i in range(WARM_LEADS):
        start, end = await send_one(urls, f"walk-warm{i}-{uuid.uuid4().hex[:8]}")
        log(f"warm-up send {i + 1}/{WARM_LEADS}: {end - start:.3f} s")
    await quiet(traces)
    settled = time.time()
    log(f"quiet; idling {SETTLE_SECONDS} s before the measured POST")
    await asyncio.sleep(SETTLE_SECONDS)  # the idle stretch that holds the idle window
    lead = f"walk-{uuid.uuid4().hex[:12]}"
    start, end = await send_one(urls, lead)
    log(f"measured send to {lead}: {end - start:.3f} s")
    return {"settled": settled, "start": start, "end": end}


def load(path: Path, since: float) -> list[Row]:
    """The trace's rows from `since` on, in time order."""
    if not path.exists():
        return []
    rows = [row for line in path.read_bytes().splitlines() if line
            for row in (orjson.loads(line),) if row[0] >= since]
    return sorted(rows, key=lambda row: row[0])


def edge(row: Row) -> tuple[str, str]:
    """(caller function, callee function), the caller ROOT_CALLER for a root entry."""
    caller = f"{row[5]}:{row[6]}" if row[5] is not None else ROOT_CALLER
    return caller, f"{row[3]}:{row[4]}"


def minus_idle(rows: list[Row], idle: list[Row]) -> list[Row]:
    """`rows` without the idle window's multiset of edges (earliest matching rows removed)."""
    left = Counter(edge(row) for row in idle)
    kept = []
    for row in rows:
        key = edge(row)
        if left[key] > 0:
            left[key] -= 1
        else:
            kept.append(row)
    return kept


def minus_idle_tasks(rows: list[Row], settled: list[Row]) -> list[Row]:
    """`rows` without the calls of the idle stack's own tasks: tasks that made calls in the
    idle stretch before the POST (timers, gauges) and, in the window, made no call along an
    edge the idle stretch did not make."""
    idle_edges = {edge(row) for row in settled}
    idle_tasks = {(row[1], row[2]) for row in settled if row[2] is not None}
    walking = {(row[1], row[2]) for row in rows if edge(row) not in idle_edges}
    noise = idle_tasks - walking
    return [row for row in rows if (row[1], row[2]) not in noise]


def is_visit(row: Row) -> bool:
    return row[5] is None or row[5] != row[3]


def is_callback(row: Row) -> bool:
    """A call into M from B (B != M) while M is on the project stack below B's frame."""
    stack = row[7]
    return row[5] is not None and row[5] != row[3] and row[3] in stack[:-1]


def measure(rows: list[Row], seen_idle: set[tuple[str, str]]) -> dict[str, Any]:
    """Calls, module visits, distinct (callee) modules, first called first, and callbacks of
    `rows`; `seen_idle`: the edges the idle stack made before the POST."""
    modules: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = modules.setdefault(row[3], {"visits": 0, "calls": 0})
        counts["calls"] += 1
        counts["visits"] += is_visit(row)
    crossings = Counter(edge(row) for row in rows if is_visit(row))
    callbacks = Counter((*edge(row), row[8]) for row in rows if is_callback(row))
    return {"calls": len(rows), "module_visits": sum(map(is_visit, rows)),
            "root_entries": sum(row[5] is None for row in rows),
            "distinct_modules": len(modules), "callbacks": sum(callbacks.values()),
            "generator_callbacks": sum(n for e, n in callbacks.items() if e[2] == "g"),
            "calls_on_idle_edges": sum(edge(row) in seen_idle for row in rows),
            "modules": [{"module": m, **n} for m, n in modules.items()],
            "callback_edges": [{"caller": a, "callee": b, "kind": k, "count": n}
                               for (a, b, k), n in callbacks.most_common()],
            "top_crossings": [{"caller": a, "callee": b, "count": n}
                              for (a, b), n in crossings.most_common(30)]}


def analyse(traces: Path, times: dict[str, float]) -> dict[str, Any]:
    """Per service and in total: the measured window raw and minus the idle window."""
    start, end = times["start"], times["end"]
    length = end - start
    idle_from = start - length
    out: dict[str, Any] = {"window_seconds": round(length, 4), "services": {}}
    every: dict[str, list[Row]] = {key: [] for key in VARIANTS}
    seen_idle: set[tuple[str, str]] = set()
    for name in SERVICES:
        rows = load(traces / f"{name}.jsonl", times["settled"])
        walk = [row for row in rows if start <= row[0] <= end]
        idle = [row for row in rows if idle_from <= row[0] < start]
        settled = [row for row in rows if row[0] < start]
        seen = {edge(row) for row in settled}
        seen_idle |= seen
        parts = {"raw": walk, "minus_idle": minus_idle(walk, idle),
                 "minus_idle_tasks": minus_idle_tasks(walk, settled), "idle": idle}
        for key, part in parts.items():
            every[key].extend(part)
        out["services"][name] = {
            **{key: measure(part, seen) for key, part in parts.items()},
            "idle_calls_per_s": round(len(settled) / max(start - times["settled"], 1e-9), 2)}
    out["total"] = {key: measure(sorted(rows, key=lambda row: row[0]), seen_idle)
                    for key, rows in every.items()}
    out["total"]["sum_of_services"] = {key: {
        k: sum(out["services"][s][key][k] for s in SERVICES)
        for k in ("calls", "module_visits", "distinct_modules", "callbacks")}
        for key in every}
    return out


def table(result: dict[str, Any]) -> str:
    """The figures per service and in total, then the walk's modules and callbacks."""
    blocks = (("raw", "raw"), ("minus_idle", "minus idle window"),
              ("minus_idle_tasks", "minus idle tasks"))
    cols = f"{'calls':>6}{'visits':>7}{'mods':>5}{'cb (g)':>8}"
    lines = [f"commit {result['commit']}, window {result['walk']['window_seconds']} s; "
             "cb = callbacks (g: of them generators first iterated by their receiver)",
             f"{'':13}" + "".join(f" | {title:<26}" for _, title in blocks) + " | idle",
             f"{'':13}" + f" | {cols}" * len(blocks) + " | calls"]

    def cells(m: dict[str, Any]) -> str:
        callbacks = f"{m['callbacks']} ({m['generator_callbacks']})"
        return (f" | {m['calls']:>6}{m['module_visits']:>7}{m['distinct_modules']:>5}"
                f"{callbacks:>8}")
    walk = result["walk"]
    for name in (*SERVICES, "total"):
        doc = walk["total"] if name == "total" else walk["services"][name]
        lines.append(f"{name:13}" + "".join(cells(doc[key]) for key, _ in blocks)
                     + f" | {doc['idle']['calls']:>5}")
    total = walk["total"]["minus_idle_tasks"]
    lines.append("\nmodules of the walk (minus idle tasks), first called first: visits / calls")
    lines += [f"  {m['module']:60} {m['visits']:>4} / {m['calls']:<4}" for m in total["modules"]]
    lines.append("callbacks (minus idle tasks): " + ("none" if not total["callback_edges"] else ""))
    lines += [f"  {e['caller']} -> {e['callee']}  x{e['count']}"
              + (" (a generator, first iterated by its receiver)" if e["kind"] == "g" else "")
              for e in total["callback_edges"]]
    return "\n".join(lines)


def commit() -> str:
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                               capture_output=True, text=True, check=False)
    return described.stdout.strip() or "unknown"


async def run(workdir: Path) -> dict[str, Any]:
    traces = workdir / "walk-traces"
    traces.mkdir(parents=True, exist_ok=True)
    for old in traces.glob("*.jsonl"):
        old.unlink()
    async with infrastructure(workdir) as infra, traced_stack(infra, traces) as urls:
        times = await drive(urls, traces)
    log("analysing the traces")
    return {"commit": commit(), "times": times, "walk": analyse(traces, times)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.walk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the figures here as JSON")
    parser.add_argument("--workdir", help="keep the servers' logs and the traces here "
                                          "(default: a temporary directory, deleted)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workdir:
        result = asyncio.run(run(Path(args.workdir)))
    else:
        with tempfile.TemporaryDirectory(prefix="nurture-walk-") as tmp:
            result = asyncio.run(run(Path(tmp)))
    print(table(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        log(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
