"""`make run`: the whole Nurture stack on this machine, in the foreground.

Starts (or reuses) the local Kafka broker and PostgreSQL (deploy/local/stack.py), creates the
topics, then runs every service as a child process with its log lines prefixed by its name.
Ctrl-C (or SIGTERM) stops the services cleanly; the broker and database keep running for the
next `make run` until `make stop`.

Local development defaults (override any of them in the environment):
  NURTURE_INGEST_API_KEYS   one key, `nurture-dev-key`, allowed any source
  NURTURE_INGEST_PORT       8080
  NURTURE_LOG_FORMAT        text
  NURTURE_SCORING_STATE_DIR .local/scoring
  NURTURE_ORCHESTRATOR_API_TOKEN    nurture-dev-token (the orchestrator API on :8081)
  NURTURE_ORCHESTRATOR_ADMIN_TOKEN  nurture-dev-admin (enables the clock endpoint)
  NURTURE_ORCHESTRATOR_ENROLLMENT_TOKEN  nurture-dev-enroll (enables enrollment changes)
  NURTURE_TRACKING_SECRET           a fixed local secret shared by ingest and dispatch
Dispatch sends email to a local SMTP sink on 127.0.0.1:1025 that prints what it receives.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack

DEV_KEY = "nurture-dev-key"
DEV_TOKEN = "nurture-dev-token"  # noqa: S105 - a documented local-only token
DEV_TRACKING_SECRET = "nurture-dev-tracking-secret"  # noqa: S105 - local only; set your own
DEV_ADMIN_TOKEN = "nurture-dev-admin"  # noqa: S105 - local-only, enables the clock endpoint
DEV_ENROLLMENT_TOKEN = "nurture-dev-enroll"  # noqa: S105 - local-only, enables enrollment changes
# Services that exist so far; each later service adds its command here.
SERVICES: dict[str, list[str]] = {
    "ingest": [sys.executable, "-m", "services.ingest", "serve"],
    "scoring": [sys.executable, "-m", "services.scoring", "worker"],
    "orchestrator": [sys.executable, "-m", "services.orchestrator", "serve"],
    # a local SMTP sink that prints every message dispatch sends (the dev "inbox")
    "smtp-sink": [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:1025"],
    "dispatch": [sys.executable, "-m", "services.dispatch", "serve", "--migrate"],
}
COLORS = ("36", "35", "33", "32", "34")


def infra(args: argparse.Namespace) -> dict[str, str]:
    """Start or reuse broker and database, create topics; return the env for the services."""
    ns = argparse.Namespace(command="up", state_dir=str(stack.DEFAULT_STATE_DIR),
                            kafka_port=args.kafka_port, pg_port=args.pg_port)
    kafka, pg = stack.servers(ns)
    env = dict(os.environ)
    if kafka:
        kafka.start()
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap
    if pg:
        pg.start()
        env["DATABASE_URL"] = pg.url
    env.setdefault("NURTURE_LOG_FORMAT", "text")
    env.setdefault("NURTURE_SCORING_STATE_DIR", str(stack.DEFAULT_STATE_DIR / "scoring"))
    env.setdefault("NURTURE_ORCHESTRATOR_API_TOKEN", DEV_TOKEN)
    env.setdefault("NURTURE_ORCHESTRATOR_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    env.setdefault("NURTURE_ORCHESTRATOR_ENROLLMENT_TOKEN", DEV_ENROLLMENT_TOKEN)
    env.setdefault("NURTURE_TRACKING_SECRET", DEV_TRACKING_SECRET)
    env.setdefault("NURTURE_INGEST_API_KEYS", json.dumps([{
        "name": "dev", "sha256": hashlib.sha256(DEV_KEY.encode()).hexdigest(), "sources": ["*"]}]))
    env["PYTHONUNBUFFERED"] = "1"
    topics = subprocess.run([sys.executable, "-m", "services.common.topics", "--partitions", "3"],
                            env=env, cwd=stack.ROOT, check=False)
    if topics.returncode != 0:
        raise stack.StackError("creating topics failed (see above)")
    migrate = subprocess.run([sys.executable, "-m", "services.orchestrator", "migrate"],
                             env=env, cwd=stack.ROOT, check=False)
    if migrate.returncode != 0:
        raise stack.StackError("database migrations failed (see above)")
    return env


def supervise(env: dict[str, str]) -> int:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    sel = selectors.DefaultSelector()
    for i, (name, cmd) in enumerate(SERVICES.items()):
        proc = subprocess.Popen(cmd, env=env, cwd=stack.ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs[name] = proc
        assert proc.stdout is not None
        sel.register(proc.stdout, selectors.EVENT_READ, (name, COLORS[i % len(COLORS)]))
    stopping = crashed = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\n[run] stopping services ...", flush=True)
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    tty = sys.stdout.isatty()
    deadline = None
    while sel.get_map():
        for key, _ in sel.select(timeout=0.5):
            name, color = key.data
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if not line:
                sel.unregister(key.fileobj)
                continue
            prefix = f"\033[{color}m{name:>12} |\033[0m" if tty else f"{name:>12} |"
            sys.stdout.write(f"{prefix} {line.decode(errors='replace')}")
            sys.stdout.flush()
        if not stopping and any(p.poll() is not None for p in procs.values()):
            dead = [n for n, p in procs.items() if p.poll() is not None]
            crashed = True
            print(f"[run] {', '.join(dead)} exited; stopping the others", flush=True)
            stop(0, None)
        if stopping:
            deadline = deadline or time.monotonic() + 30
            if time.monotonic() > deadline:
                for proc in procs.values():
                    proc.kill()
    codes = {name: proc.wait() for name, proc in procs.items()}
    print(f"[run] stopped: {codes}. Broker and database keep running; `make stop` stops them.")
    return 1 if crashed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--infra-only", action="store_true",
                        help="start broker + database and create topics, then return")
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PG_PORT", 55432)))
    args = parser.parse_args(argv)
    try:
        env = infra(args)
    except stack.StackError as exc:
        print(f"[run] error: {exc}", file=sys.stderr)
        return 1
    print(f"[run] Kafka: {env['KAFKA_BOOTSTRAP_SERVERS']}   PostgreSQL: {env['DATABASE_URL']}")
    if args.infra_only:
        return 0
    port = env.get("NURTURE_INGEST_PORT", "8080")
    print(f"[run] ingest on http://127.0.0.1:{port} (docs: /docs); dev API key: {DEV_KEY}")
    print(f"[run] orchestrator API on http://127.0.0.1:8081 (docs: /docs); token: {DEV_TOKEN}")
    return supervise(env)


if __name__ == "__main__":
    sys.exit(main())
