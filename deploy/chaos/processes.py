"""The stack of a fault run: its own Kafka broker and PostgreSQL cluster on free ports (the
classes of deploy/local/stack.py), and every service as a separate child process (the commands
of deploy/local/run.py), each on free ports with its output appended to `logs/<name>.log`.

Blocking work (starting the broker, waiting for readiness) is meant to run in a thread
(`asyncio.to_thread`) so the peers in the driver's event loop keep answering."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local import stack
from deploy.local.run import SERVICES

ROOT = stack.ROOT
API_KEY = "nurture-chaos-key"
API_TOKEN = "chaos-token"  # noqa: S105 - a throwaway token of a throwaway local stack
ADMIN_TOKEN = "chaos-admin"  # noqa: S105
TRACKING_SECRET = "chaos-tracking-secret-0123456789"  # noqa: S105
WEBHOOK_SECRET = "chaos-webhook-secret-0123456789"  # noqa: S105
CONFIG = Path(__file__).resolve().parent / "config"


def fresh_run_dir(out: Path, also: tuple[str, ...] = ()) -> None:
    """Clear a previous run's files from `out` (and `also`, names in it), make `logs/`, and
    send the driver's own logging to `logs/driver.log`."""
    for old in ("logs", "kafka", "postgres", "scoring-1", "scoring-2", "result.json", *also):
        path = out / old  # a previous run's: this run's logs and figures stand alone
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    # the driver's own clients (observer, peers) log to a file: reconnect noise during the
    # broker outage is expected and would bury the progress lines
    logging.basicConfig(filename=out / "logs" / "driver.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


@dataclass(frozen=True, slots=True)
class DispatchTimings:
    """Dispatch's timeouts and polls in a run: short, so faults clear in seconds."""

    smtp_timeout: float = 5.0
    http_timeout: float = 2.0
    sending_timeout: float = 20.0  # an attempt still 'sending' after this was interrupted
    lease: float = 20.0  # a claimed row comes back after this if its claimer died
    poll: float = 0.5
    recovery_poll: float = 2.0

    def env(self) -> dict[str, str]:
        return {"NURTURE_DISPATCH_SMTP_TIMEOUT_SECONDS": str(self.smtp_timeout),
                "NURTURE_DISPATCH_HTTP_TIMEOUT_SECONDS": str(self.http_timeout),
                "NURTURE_DISPATCH_SENDING_TIMEOUT_SECONDS": str(self.sending_timeout),
                "NURTURE_DISPATCH_LEASE_SECONDS": str(self.lease),
                "NURTURE_DISPATCH_POLL_SECONDS": str(self.poll),
                "NURTURE_DISPATCH_RECOVERY_POLL_SECONDS": str(self.recovery_poll)}

    @property
    def late_window(self) -> float:
        """The longest path of a late resend: an attempt interrupted mid-send stays `sending`
        until the sending timeout, is found by the next recovery poll, picked up within a
        delivery poll and sent within the HTTP timeout. Only the HTTP channels (webhook, CRM
        task) are resent so; an interrupted email is failed as `sent_unconfirmed`."""
        return self.sending_timeout + self.recovery_poll + self.poll + self.http_timeout


@dataclass
class Service:
    """One child process: its command, environment additions and how to tell it is ready."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str | None = None  # else: "Worker ready" in its log since the start
    live_url: str | None = None  # its liveness probe, where it has one of its own
    proc: subprocess.Popen[bytes] | None = None
    _mark: int = 0

    def start(self, base: dict[str, str]) -> None:
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, env={**base, **self.env}, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-3000:]
            raise stack.StackError(f"{self.name} exited; last output:\n{tail}")
        if self.ready_url is None:
            with open(self.log, "rb") as f:
                f.seek(self._mark)
                return b"Worker ready" in f.read()
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as r:  # noqa: S310 - loopback
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def unlive(self) -> str | None:
        """Why its liveness probe fails (a 503 and its text), or None: it passes, the process
        is not running, or the probe does not answer yet (starting)."""
        if self.live_url is None or not self.alive():
            return None
        try:
            with urllib.request.urlopen(self.live_url, timeout=2):  # noqa: S310 - loopback
                return None
        except urllib.error.HTTPError as exc:
            return exc.read().decode(errors="replace").strip() if exc.code == 503 else None
        except (urllib.error.URLError, OSError):
            return None

    def wait_ready(self, timeout: float = 180.0) -> None:
        stack.wait_for(self.name, self.ready, timeout, self.log)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.kill9()


@dataclass
class ChaosStack:
    """Broker, database and services of one run, all under `out`."""

    out: Path
    smtp_port: int
    webhook_url: str
    scoring_workers: int = 2
    timings: DispatchTimings = field(default_factory=DispatchTimings)
    programs: Path = CONFIG / "programs"  # the orchestrator's program files
    extra_env: dict[str, str] = field(default_factory=dict)  # added to every service's, last
    kafka: stack.Kafka = field(init=False)
    pg: stack.Postgres = field(init=False)
    services: dict[str, Service] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.out / "logs"
        self.kafka = stack.Kafka(home=self.out / "kafka", port=stack.free_port(),
                                 libs=stack.kafka_libs())
        self.pg = stack.Postgres(home=self.out / "postgres", port=stack.free_port())
        self.ports = {"ingest": stack.free_port(), "orchestrator": stack.free_port(),
                      "dispatch": stack.free_port()}

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def orchestrator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['orchestrator']}"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("NURTURE_", "KAFKA_", "DATABASE_URL"))}
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap, "DATABASE_URL": self.pg.url,
            "NURTURE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
            "NURTURE_TRACKING_SECRET": TRACKING_SECRET,
            "NURTURE_INGEST_API_KEYS": json.dumps([{
                "name": "chaos", "sha256": hashlib.sha256(API_KEY.encode()).hexdigest()}]),
            "NURTURE_INGEST_RETRY_AFTER_SECONDS": "1",
            "NURTURE_INGEST_PRODUCE_TIMEOUT_SECONDS": "5",
            "NURTURE_SCORING_SESSION_TIMEOUT_SECONDS": "10",
            "NURTURE_SCORING_COMMIT_STUCK_SECONDS": "30",  # the run's kubelet acts on /livez
            "NURTURE_ORCHESTRATOR_PROGRAMS": str(self.programs),
            "NURTURE_ORCHESTRATOR_POLICY": str(CONFIG / "contact-policy.yaml"),
            "NURTURE_ORCHESTRATOR_API_TOKEN": API_TOKEN,
            "NURTURE_ORCHESTRATOR_ADMIN_TOKEN": ADMIN_TOKEN,
            # one clock: ingest and dispatch follow the orchestrator's as the run moves it
            "NURTURE_CLOCK_URL": f"{self.orchestrator_url}/v1/admin/clock",
            "NURTURE_CLOCK_TOKEN": ADMIN_TOKEN,
            "NURTURE_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "5",
            "NURTURE_DISPATCH_SMTP_PORT": str(self.smtp_port),
            "NURTURE_DISPATCH_WEBHOOK_URL": self.webhook_url,
            "NURTURE_DISPATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "NURTURE_DISPATCH_TRACKING_BASE_URL": self.ingest_url,
            "NURTURE_DISPATCH_MAX_ATTEMPTS": "100",
            "NURTURE_DISPATCH_RETRY_BASE_SECONDS": "0.5",
            "NURTURE_DISPATCH_RETRY_MAX_SECONDS": "4",
            "NURTURE_DISPATCH_SHUTDOWN_GRACE_SECONDS": "5",
            **self.timings.env(),
            **self.extra_env,
        })
        return env

    def _define(self) -> None:
        def svc(name: str, cmd: list[str], env: dict[str, str], ready: str | None,
                live: str | None = None) -> None:
            self.services[name] = Service(name, cmd, env, self.logs / f"{name}.log", ready,
                                          live)

        port = self.ports
        svc("ingest", SERVICES["ingest"], {"NURTURE_INGEST_PORT": str(port["ingest"])},
            f"{self.ingest_url}/readyz")
        for n in range(1, self.scoring_workers + 1):
            metrics = stack.free_port()
            svc(f"scoring-{n}", SERVICES["scoring"], {
                "NURTURE_SCORING_STATE_DIR": str(self.out / f"scoring-{n}"),
                "NURTURE_SCORING_METRICS_PORT": str(metrics)}, None,
                f"http://127.0.0.1:{metrics}/livez")
        svc("orchestrator", SERVICES["orchestrator"],
            {"NURTURE_ORCHESTRATOR_PORT": str(port["orchestrator"])},
            f"{self.orchestrator_url}/readyz")
        svc("dispatch", SERVICES["dispatch"], {"NURTURE_DISPATCH_PORT": str(port["dispatch"])},
            f"http://127.0.0.1:{port['dispatch']}/readyz")

    def up(self) -> None:
        """Start broker and database, create topics, migrate, start and await every service."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.kafka.start()
        self.pg.start()
        self.env = self.base_env()
        for cmd in (["-m", "services.operator.topics", "--partitions", "3"],
                    ["-m", "services.orchestrator", "migrate"]):
            with open(self.logs / "setup.log", "ab") as out:
                done = subprocess.run([SERVICES["ingest"][0], *cmd], env=self.env, cwd=ROOT,
                                      stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                raise stack.StackError(f"{' '.join(cmd)} failed; see {self.logs / 'setup.log'}")
        self._define()
        for service in self.services.values():
            service.start(self.env)
        for service in self.services.values():
            service.wait_ready()

    def restart(self, name: str) -> None:
        service = self.services[name]
        service.start(self.env)
        service.wait_ready()

    def unlive(self) -> dict[str, str]:
        """The services whose liveness probe fails, and why."""
        found = {name: s.unlive() for name, s in self.services.items()}
        return {name: why for name, why in found.items() if why is not None}

    def check_alive(self) -> list[str]:
        """Services that died on their own (a crash, not one of our kills)."""
        return [name for name, s in self.services.items() if not s.alive()]

    def down(self, *, keep_data: bool = False) -> None:
        for service in self.services.values():
            service.stop()
        with contextlib.suppress(stack.StackError):
            self.kafka.stop()
        with contextlib.suppress(stack.StackError):
            self.pg.stop() if keep_data else self.pg.destroy()
        if not keep_data:
            shutil.rmtree(self.out / "kafka" / "data", ignore_errors=True)
