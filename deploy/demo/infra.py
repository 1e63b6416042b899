"""Set-up for a demo run, reusing `make run`'s code (deploy/local/run.py): broker, database,
topics and migrations, then scoring, orchestrator and dispatch as child processes.

Each run gets its own topic prefix, database schemas, consumer groups and free ports, so it
never mixes with `make run`, the test suite or an earlier demo. Ingest runs in the driver's
process (see driver.py: it shares the simulated clock) next to the demo's SMTP and CRM sinks."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local import run as local_run
from deploy.local.stack import ROOT, free_port

CHILDREN = ("scoring", "orchestrator", "dispatch")


@dataclass
class Ports:
    ingest: int = field(default_factory=free_port)
    orchestrator: int = field(default_factory=free_port)
    dispatch: int = field(default_factory=free_port)
    scoring_metrics: int = field(default_factory=free_port)
    smtp: int = field(default_factory=free_port)
    crm: int = field(default_factory=free_port)


@dataclass
class DemoEnv:
    run_id: str
    ports: Ports
    env: dict[str, str]
    logs: Path

    @property
    def prefix(self) -> str:
        return self.env["NURTURE_TOPIC_PREFIX"]

    @property
    def orchestrator_schema(self) -> str:
        return self.env["NURTURE_ORCHESTRATOR_DB_SCHEMA"]

    @property
    def dispatch_schema(self) -> str:
        return self.env["NURTURE_DISPATCH_DB_SCHEMA"]


def prepare(out: Path, days: int) -> DemoEnv:
    """Start or reuse broker and database (run.infra), with this run's topics and schemas."""
    run_id = time.strftime("%Y%m%d%H%M%S") + f"{os.getpid() % 1000:03d}"
    ports = Ports()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    os.environ.update({
        "NURTURE_TOPIC_PREFIX": f"demo-{run_id}.",
        "NURTURE_ORCHESTRATOR_DB_SCHEMA": f"demo_{run_id}",
        "NURTURE_DISPATCH_DB_SCHEMA": f"demo_{run_id}_dispatch",
        "NURTURE_SCORING_STATE_DIR": str(out / "scoring-state"),
        "NURTURE_SCORING_METRICS_PORT": str(ports.scoring_metrics),
        "NURTURE_INGEST_PORT": str(ports.ingest),
        "NURTURE_ORCHESTRATOR_PORT": str(ports.orchestrator),
        "NURTURE_ORCHESTRATOR_TIMER_POLL_SECONDS": "0.2",
        "NURTURE_ORCHESTRATOR_RELAY_IDLE_SECONDS": "0.1",
        "NURTURE_DISPATCH_PORT": str(ports.dispatch),
        "NURTURE_DISPATCH_SMTP_HOST": "127.0.0.1",
        "NURTURE_DISPATCH_SMTP_PORT": str(ports.smtp),
        "NURTURE_DISPATCH_TRACKING_BASE_URL": f"http://127.0.0.1:{ports.ingest}",
        # links are checked against the simulated clock, which runs `days` ahead by the end
        "NURTURE_DISPATCH_TRACKING_TTL_DAYS": str(days + 90),
        "NURTURE_DISPATCH_CRM_URL": f"http://127.0.0.1:{ports.crm}/tasks",
        "NURTURE_DISPATCH_CRM_TOKEN": "nurture-demo-crm",
        "NURTURE_LOG_FORMAT": "text",
        # the driver posts with the local dev key (the in-process ingest reads this too)
        "NURTURE_INGEST_API_KEYS": json.dumps([{"name": "demo", "sources": ["*"], "sha256":
                                                hashlib.sha256(local_run.DEV_KEY.encode())
                                                .hexdigest()}]),
    })
    args = argparse.Namespace(kafka_port=int(os.environ.get("KAFKA_PORT", 9092)),
                              pg_port=int(os.environ.get("PG_PORT", 55432)))
    env = local_run.infra(args)
    os.environ.update(env)
    return DemoEnv(run_id, ports, env, logs)


def start_children(demo: DemoEnv) -> dict[str, subprocess.Popen[bytes]]:
    """Scoring, orchestrator and dispatch with `make run`'s commands, logging to files."""
    procs = {}
    for name in CHILDREN:
        with open(demo.logs / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen(local_run.SERVICES[name], env=demo.env, cwd=ROOT,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
    return procs


def check_alive(procs: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")


def stop_children(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def scoring_ready(logs: Path) -> bool:
    return b"Worker ready" in (logs / "scoring.log").read_bytes()



def write_prometheus_config(demo: DemoEnv, path: Path) -> None:
    """A Prometheus config that scrapes this run's services (their ports are picked per run)
    with the project's alert rules, so Grafana's dashboards can follow the demo live."""
    p = demo.ports
    jobs = {"ingest": p.ingest, "scoring": p.scoring_metrics, "orchestrator": p.orchestrator,
            "dispatch": p.dispatch}
    rules = ROOT / "deploy" / "observability" / "prometheus" / "alerts.yml"
    lines = [f"# written by `make demo` for run {demo.run_id}", "global:",
             "  scrape_interval: 5s", "  evaluation_interval: 5s",
             *([f"rule_files: ['{rules}']"] if rules.exists() else []), "scrape_configs:"]
    for job, port in jobs.items():
        lines += [f"  - job_name: {job}",
                  f"    static_configs: [{{targets: ['127.0.0.1:{port}'], "
                  f"labels: {{demo_run: '{demo.run_id}'}}}}]"]
    path.write_text("\n".join(lines) + "\n")
