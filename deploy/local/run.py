"""`make run`: the whole Nurture stack on this machine, in the foreground.

Starts (or reuses) the local Kafka broker and PostgreSQL (deploy/local/stack.py), creates the
topics, then runs every service as a child process with its log lines prefixed by its name.
Terminal control sequences (the scoring worker's start-up spinner) are stripped, and a line a
service leaves without its newline is shown once the service pauses. A service that exits, for
whatever reason, is reported at once with its exit code or signal and restarted after a back-off
(1 s, doubling up to 30 s; back to 1 s once it has stayed up a minute). Ctrl-C (or SIGTERM) stops
the services cleanly, without restarts; the broker and database keep running for the next
`make run` until `make stop`.

Local development defaults (override any of them in the environment):
  NURTURE_INGEST_API_KEYS   one key, `nurture-dev-key`, allowed any source
  NURTURE_INGEST_PORT       8080
  NURTURE_LOG_FORMAT        text
  NURTURE_SCORING_STATE_DIR <state dir>/scoring
  NURTURE_ORCHESTRATOR_API_TOKEN    nurture-dev-token (the orchestrator API, :8081 unless
                                    NURTURE_ORCHESTRATOR_PORT says otherwise)
  NURTURE_ORCHESTRATOR_ADMIN_TOKEN  nurture-dev-admin (enables the clock endpoints)
  NURTURE_CLOCK_URL, NURTURE_CLOCK_TOKEN  the orchestrator's clock and that token: ingest,
                                    scoring and dispatch follow it when it is moved
  NURTURE_ORCHESTRATOR_ENROLLMENT_TOKEN  nurture-dev-enroll (enables enrollment changes)
  NURTURE_TRACKING_SECRET           a fixed local secret shared by ingest and dispatch
Dispatch sends email to a local SMTP sink on 127.0.0.1:1025 (NURTURE_DISPATCH_SMTP_PORT) that
prints what it receives.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack
from supervisor import Supervisor

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

def infra(args: argparse.Namespace, state_dir: Path = stack.DEFAULT_STATE_DIR) -> dict[str, str]:
    """Start or reuse broker and database, create topics; return the env for the services."""
    ns = argparse.Namespace(command="up", state_dir=str(state_dir),
                            kafka_port=args.kafka_port, pg_port=args.pg_port)
    kafka, pg = stack.servers(ns)
    state_dir.mkdir(parents=True, exist_ok=True)  # the scoring state's parent, when nothing else
    env = dict(os.environ)
    if kafka:
        kafka.start()
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap
    if pg:
        pg.start()
        env["DATABASE_URL"] = pg.url
    env.setdefault("NURTURE_LOG_FORMAT", "text")
    env.setdefault("NURTURE_SCORING_STATE_DIR", str(state_dir / "scoring"))
    env.setdefault("NURTURE_ORCHESTRATOR_API_TOKEN", DEV_TOKEN)
    env.setdefault("NURTURE_ORCHESTRATOR_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    env.setdefault("NURTURE_ORCHESTRATOR_ENROLLMENT_TOKEN", DEV_ENROLLMENT_TOKEN)
    # one clock: ingest, scoring and dispatch follow the orchestrator's, however far it is moved
    orchestrator = f"http://127.0.0.1:{env.get('NURTURE_ORCHESTRATOR_PORT', '8081')}"
    env.setdefault("NURTURE_CLOCK_URL", f"{orchestrator}/v1/admin/clock")
    env.setdefault("NURTURE_CLOCK_TOKEN", env["NURTURE_ORCHESTRATOR_ADMIN_TOKEN"])
    env.setdefault("NURTURE_TRACKING_SECRET", DEV_TRACKING_SECRET)
    env.setdefault("NURTURE_INGEST_API_KEYS", json.dumps([{
        "name": "dev", "sha256": hashlib.sha256(DEV_KEY.encode()).hexdigest(), "sources": ["*"]}]))
    env["PYTHONUNBUFFERED"] = "1"
    topics = subprocess.run([sys.executable, "-m", "services.operator.topics", "--partitions", "3"],
                            env=env, cwd=stack.ROOT, check=False)
    if topics.returncode != 0:
        raise stack.StackError("creating topics failed (see above)")
    migrate = subprocess.run([sys.executable, "-m", "services.orchestrator", "migrate"],
                             env=env, cwd=stack.ROOT, check=False)
    if migrate.returncode != 0:
        raise stack.StackError("database migrations failed (see above)")
    return env


def service_commands(env: dict[str, str]) -> dict[str, list[str]]:
    """SERVICES, with the SMTP sink on the port dispatch sends to."""
    port = env.get("NURTURE_DISPATCH_SMTP_PORT", "1025")
    return {**SERVICES, "smtp-sink": [*SERVICES["smtp-sink"][:-1], f"127.0.0.1:{port}"]}


def supervise(commands: dict[str, list[str]], env: dict[str, str], *,
              out: TextIO = sys.stdout) -> dict[str, int | None]:
    """Run `commands` under a Supervisor until SIGINT or SIGTERM; each one's exit code."""
    supervisor = Supervisor(commands, env, stack.ROOT, out, color=out.isatty())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: supervisor.request_stop())
    return supervisor.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--infra-only", action="store_true",
                        help="start broker + database and create topics, then return")
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("KAFKA_PORT", 9092)),
                        help="broker port on 127.0.0.1 (env KAFKA_PORT, default %(default)s)")
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("PG_PORT", 55432)),
                        help="PostgreSQL port on 127.0.0.1 (env PG_PORT, default %(default)s)")
    parser.add_argument("--state-dir", type=Path, default=stack.DEFAULT_STATE_DIR,
                        help="data, logs and pid files of broker, database and scoring state "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        env = infra(args, args.state_dir)
    except stack.StackError as exc:
        print(f"[run] error: {exc}", file=sys.stderr)
        return 1
    print(f"[run] Kafka: {env['KAFKA_BOOTSTRAP_SERVERS']}   PostgreSQL: {env['DATABASE_URL']}")
    if args.infra_only:
        return 0
    port = env.get("NURTURE_INGEST_PORT", "8080")
    print(f"[run] ingest on http://127.0.0.1:{port} (docs: /docs); dev API key: {DEV_KEY}")
    port = env.get("NURTURE_ORCHESTRATOR_PORT", "8081")
    print(f"[run] orchestrator API on http://127.0.0.1:{port} (docs: /docs); "
          f"token: {env['NURTURE_ORCHESTRATOR_API_TOKEN']}", flush=True)
    codes = supervise(service_commands(env), env)
    print(f"[run] stopped: {codes}. Broker and database keep running; `make stop` stops them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
