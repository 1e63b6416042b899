"""Helpers for integration tests: isolated topics, reading topics back, running a real server.
Everything waits by polling with a deadline; nothing sleeps for a fixed time to synchronize."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from deploy.local.stack import free_port
from schemas.records import Crossing, LeadScore, ModelScore, ScoredEvent
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics, ensure_topics
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.adapters.records import erased_event
from services.orchestrator.bootstrap import bootstrap as bootstrap_orchestrator
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[1]


SCORED_AS_OF = "2026-11-20T10:00:00Z"  # the score's time when the event has none


def model_score(total: float = 0.0, *, crossed: Iterable[tuple[str, str]] = (),
                model: str = "b2b", **more: Any) -> ModelScore:
    """One model's score after an event: `total` points (all engagement), the thresholds
    `crossed` as (name, "up" | "down"); `more` sets other fields (interests, journey_stage...)."""
    return ModelScore(model=model, version=1, fit=0.0, engagement=total, total=total,
                      previous_total=None, crossed=tuple(
                          Crossing(threshold=name, direction=way, score=total)  # type: ignore[arg-type]
                          for name, way in crossed), **more)


def scored_record(event: Mapping[str, Any], *models: ModelScore) -> bytes:
    """The value of a valid `nurture.scored-events.v1` record, built through its model: `event`
    (a CloudEvent with at least id, source, type, subject) and the lead's `models` after it."""
    score = LeadScore(lead_id=str(event["subject"]), as_of=event.get("time", SCORED_AS_OF),
                      models={m.model: m for m in models})
    return ScoredEvent(event=dict(event), score=score).to_bytes()


async def orchestrator_app(database_url: str, kafka: KafkaSettings, decider: Any, *,
                           stage_model: str) -> Any:
    """The orchestrator's app on a freshly migrated schema of its own: API token `t`, admin
    token `a`, its timer and outbox loops fast."""
    schema = unique("orch").replace("-", "_")
    await asyncio.to_thread(upgrade, database_url, schema)
    settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, api_token="t", admin_token="a",
        stage_model=stage_model, timer_poll_seconds=0.1, relay_idle_seconds=0.05)
    return create_orchestrator(bootstrap_orchestrator(settings, kafka, decider))


async def post_events(client: httpx.AsyncClient, ingest: str, key: str,
                      *events: dict[str, Any]) -> None:
    """`POST /v1/events` of a batch with the API key `key`; asserts it is accepted."""
    r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(list(events)),
                          headers={"Authorization": f"Bearer {key}",
                                   "Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 202, r.text


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def isolated_kafka(bootstrap: str, partitions: int = 3) -> KafkaSettings:
    """Settings with a topic prefix no other test uses, and those topics created."""
    settings = KafkaSettings(bootstrap_servers=bootstrap,
                             NURTURE_TOPIC_PREFIX=unique("t") + ".")  # type: ignore[call-arg]
    await ensure_topics(settings, partitions=partitions)
    return settings


async def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, polling until `until(records)` or timeout."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("g"),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
            if until(records):
                return records
        raise AssertionError(f"timed out reading {topic}: got {len(records)} records")
    finally:
        await consumer.stop()


async def wait_until(check: Callable[[], Any], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app under a real uvicorn server on a free loopback port; yield its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=20, what="server start")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@asynccontextmanager
async def migrated_schema(database_url: str, upgrade: Callable[[str, str], None],
                          prefix: str) -> AsyncIterator[AsyncEngine]:
    """A database schema of the test's own, brought up to date by a service's `upgrade`, and an
    engine whose connections use it (disposed on exit)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        yield engine
    finally:
        await engine.dispose()


class ChildProcess:
    """A service a test runs as a child process (`proc`): killed with -9, or stopped politely
    (SIGTERM, then SIGKILL after 30 s)."""

    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class ScoringWorker(ChildProcess):
    """`nurture-scoring worker` as a child process, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.metrics_port = int(env["NURTURE_SCORING_METRICS_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self._mark = 0

    def start(self) -> None:
        self._mark = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.scoring", "worker"],
                                         env=self.env, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT)

    async def ready(self) -> None:
        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.log.read_text()[-3000:]}")
            return b"Worker ready" in self.log.read_bytes()[self._mark:]
        await wait_until(started, timeout=90, what="scoring worker Ready")

    async def events_scored(self, outcome: str | None = None) -> float:
        """Events this worker consumed (with `outcome`: only those), from its /metrics."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("nurture_scoring_events_total{")
                   and (outcome is None or f'outcome="{outcome}"' in line))


@asynccontextmanager
async def scoring_worker(kafka: KafkaSettings, folder: Path, model: str | Path, *,
                         log_format: str = "text") -> AsyncIterator[ScoringWorker]:
    """A started, ready scoring worker on `kafka`'s topics scoring with the `model` YAML (or
    the model files at a path); its state and log under `folder`. Stopped (SIGTERM) on exit."""
    if isinstance(model, str):
        (folder / "model.yaml").write_text(model)
    worker = ScoringWorker({
        **os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NURTURE_TOPIC_PREFIX": kafka.topic_prefix,
        "NURTURE_SCORING_MODELS": str(model if isinstance(model, Path) else
                                      folder / "model.yaml"),
        "NURTURE_SCORING_STATE_DIR": str(folder / "scorer"),
        "NURTURE_SCORING_METRICS_PORT": str(free_port()), "NURTURE_LOG_FORMAT": log_format},
        folder / "scorer.log")
    worker.start()
    try:
        await worker.ready()
        yield worker
    finally:
        worker.stop()


async def publish_erasure(kafka: KafkaSettings, lead: str) -> None:
    """What the orchestrator's relay publishes for `DELETE /v1/leads/{id}`."""
    record = erased_event(lead, topic=Topics(kafka.topic_prefix).events,
                          now=datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(record.topic, record.value, key=record.key,
                                     headers=[(k, v.encode()) for k, v in record.headers])
    finally:
        await producer.stop()


def run_to_a_gone_reader(*args: str, stdin: bytes = b"",
                         env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `python -m args` with stdout a pipe whose reader has already gone (as `| head` once
    it has its lines): exit code and stderr."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", *args], stdout=write, input=stdin,
                              stderr=subprocess.PIPE, timeout=60, check=False, env=env)
    finally:
        os.close(write)
    return proc.returncode, proc.stderr.decode()
