"""`make run` (deploy/local/run.py) under load: thousands of events posted to ingest while each
service in turn is killed with SIGKILL. Each exit is reported at once, the service is restarted
and relayed again, the others keep being relayed, and every lead reaches the orchestrator.

run.py uses the session's broker and database (KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, which
make it start none of its own) with this test's topic prefix, schemas, state dir and free ports,
so it never meets a developer's `make run` or another test."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local import run as local_run
from deploy.local.stack import free_port, port_open
from tests.deploy.run_support import RunProcess
from tests.support import ROOT

BATCH = 500  # events per request, ingest's limit
EXIT_REPORTED_WITHIN = 3.0  # seconds from the SIGKILL to the supervisor's line about it


class MakeRun(RunProcess):
    """deploy/local/run.py with its own ports; knows when each service answers."""

    def __init__(self, kafka_bootstrap: str, database_url: str, state_dir: Path) -> None:
        self.port = {name: free_port() for name in
                     ("ingest", "orchestrator", "dispatch", "smtp", "scoring")}
        run_id = uuid.uuid4().hex[:10]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NURTURE_", "KAFKA_", "DATABASE_URL", "PG_"))}
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url,
            "NURTURE_TOPIC_PREFIX": f"makerun-{run_id}.",
            "NURTURE_ORCHESTRATOR_DB_SCHEMA": f"makerun_{run_id}",
            "NURTURE_DISPATCH_DB_SCHEMA": f"makerun_{run_id}_dispatch",
            "NURTURE_INGEST_PORT": str(self.port["ingest"]),
            "NURTURE_ORCHESTRATOR_PORT": str(self.port["orchestrator"]),
            "NURTURE_DISPATCH_PORT": str(self.port["dispatch"]),
            "NURTURE_DISPATCH_SMTP_PORT": str(self.port["smtp"]),
            "NURTURE_SCORING_METRICS_PORT": str(self.port["scoring"]),
            # a killed worker's partitions move on after 10 s, not 30
            "NURTURE_SCORING_SESSION_TIMEOUT_SECONDS": "10",
            "NURTURE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "5",
            "NURTURE_DISPATCH_SHUTDOWN_GRACE_SECONDS": "5",
        })
        super().__init__([sys.executable, str(ROOT / "deploy" / "local" / "run.py"),
                          "--state-dir", str(state_dir)], env)
        self.http = httpx.Client(timeout=10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port[name]}"

    def answers(self, name: str) -> bool:
        """The service is up: its readiness endpoint says so (the sink: its port is open)."""
        if name == "smtp-sink":
            return port_open(self.port["smtp"])
        path = {"ingest": "/readyz", "orchestrator": "/readyz", "dispatch": "/readyz",
                "scoring": "/healthz"}[name]
        try:
            return self.http.get(self.url(name) + path).status_code == 200
        except httpx.TransportError:
            return False

    def post(self, events: list[dict[str, Any]]) -> None:
        """Post a batch; a 503 (Kafka slow to acknowledge on a busy machine) is retried, which
        ingest's answer allows (ids make a retry safe)."""
        answers: list[httpx.Response] = []

        def accepted() -> bool:
            answers.append(self.http.post(
                f"{self.url('ingest')}/v1/events", json=events,
                headers={"Authorization": f"Bearer {local_run.DEV_KEY}",
                         "Content-Type": "application/cloudevents-batch+json"}))
            assert answers[-1].status_code in (202, 503), answers[-1].text
            return answers[-1].status_code == 202

        self.wait_for("202 from ingest", lambda _lines: accepted(), 60)

    def knows(self, lead: str) -> bool:
        try:
            response = self.http.get(f"{self.url('orchestrator')}/v1/leads/{lead}",
                                     headers={"Authorization": f"Bearer {local_run.DEV_TOKEN}"})
        except httpx.TransportError:
            return False
        return response.status_code == 200


def page_views(leads: list[str], per_lead: int) -> list[dict[str, Any]]:
    return [{"specversion": "1.0", "id": f"{lead}-{n}", "source": "https://www.example.com",
             "type": "web.page_viewed", "subject": lead,
             "data": {"url": f"https://www.example.com/docs/{n}", "title": "Docs"}}
            for n in range(per_lead) for lead in leads]


def until(what: str, check: Callable[[], bool], timeout: float, run: MakeRun) -> None:
    run.wait_for(what, lambda _lines: check(), timeout)


def kill_and_await_restart(run: MakeRun, name: str) -> None:
    """SIGKILL the service: the exit is reported at once, the service restarted and ready."""
    old, mark = run.pids(name)[-1], len(run.output())
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    pattern = rf"^\[run\] {re.escape(name)} was killed by SIGKILL after [\d.]+s; restarting"
    run.wait_line(pattern, timeout=EXIT_REPORTED_WITHIN + 2, after=mark)
    assert run.received(pattern) - killed < EXIT_REPORTED_WITHIN
    new = int(run.wait_line(rf"^\[run\] started {re.escape(name)} \(pid (\d+)\)",
                            timeout=10, after=mark)[1])
    assert new != old
    until(f"{name} ready again", partial(run.answers, name), 90, run)


@pytest.fixture
def make_run(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> Iterator[MakeRun]:
    run = MakeRun(kafka_bootstrap, database_url, tmp_path / "state")
    try:
        yield run
    finally:
        run.http.close()
        run.kill_all()


def test_make_run_relays_reports_and_restarts_each_killed_service_under_load(
        make_run: MakeRun) -> None:
    run = make_run
    names = list(local_run.SERVICES)
    for name in names:
        until(f"{name} ready", partial(run.answers, name), 120, run)
    last_leads: list[str] = []

    def load(phase: str, events: int) -> None:
        leads = [f"lead-{phase}-{i}" for i in range(events // 10)]
        views = page_views(leads, 10)
        for start in range(0, len(views), BATCH):
            run.post(views[start:start + BATCH])
        last_leads.append(leads[-1])

    load("start", 3000)
    marks = []
    for name in names:
        marks.append(len(run.output()))
        kill_and_await_restart(run, name)
        load(f"after-{name}", BATCH)
    # every lead posted, before and after each kill, reaches the orchestrator
    for lead in last_leads:
        until(f"the orchestrator knows {lead}", partial(run.knows, lead), 120, run)
    lines = run.output()
    for name in names:
        assert len(run.pids(name)) == 2, f"{name} was restarted more than once"
    # each restarted service is relayed again (the sink prints nothing until mail comes)
    for name in ("ingest", "scoring", "orchestrator", "dispatch"):
        restarted = lines.index(f"[run] started {name} (pid {run.pids(name)[-1]})")
        assert any(line.startswith(f"{name:>12} | ") for line in lines[restarted:]), name
    # the orchestrator's log of the leads (a line per new lead) went on after every kill
    for mark in marks:
        assert any(line.startswith("orchestrator | ") for line in lines[mark:])
    assert not any("\x1b" in line or "\b" in line for line in lines)
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(60) == 0
    run.wait_line(r"^\[run\] stopped: ", timeout=5)
    stopping = run.output().index("[run] stopping services ...")
    assert not [line for line in run.output()[stopping:] if "restarting" in line]
