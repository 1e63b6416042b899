"""SIGTERM, as Kubernetes sends it at the start of a pod's termination grace period: every service
process exits 0 within the grace period (the chart's terminationGracePeriodSeconds), consumers
have committed exactly what they processed and left their group (no wait for a session timeout
before a rebalance), and ingest finishes a request that was in flight when the signal came."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.stack import free_port
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.dispatch.adapters.migrate import upgrade as dispatch_upgrade
from services.orchestrator.adapters.migrate import upgrade as orchestrator_upgrade
from tests.deploy.chart_support import CHART
from tests.dispatch.integration.dispatch_harness import SmtpSink, command
from tests.support import ROOT, isolated_kafka, read_topic, scored_record, wait_until

# what Kubernetes waits after SIGTERM before SIGKILL (the chart's default)
GRACE = float(yaml.safe_load((CHART / "values.yaml").read_text())
              ["terminationGracePeriodSeconds"])
DEV_KEY = "sigterm-test-key"


class Service:
    """One service as a child process (its real command line), output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.env = {**os.environ, "NURTURE_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1", **env}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", *args], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()[-3000:]}")
        return True

    def terminate(self) -> int:
        """SIGTERM; the exit code, or a failure if it outlived the grace period."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"still running {GRACE}s after SIGTERM (Kubernetes would "
                                 f"SIGKILL it):\n{self.output()[-3000:]}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


async def group_state(bootstrap: str, group: str) -> tuple[str, int, dict[tuple[str, int], int]]:
    """(state, members, committed offsets by (topic, partition)) of a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    (_, _, state, _, _, members, *_) = described.groups[0]
    return state, len(members), {(tp.topic, tp.partition): o.offset
                                 for tp, o in offsets.items() if o.offset >= 0}


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def healthy(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap, partitions=3)


async def test_scoring_worker_commits_on_sigterm_and_leaves_its_group(
        kafka: KafkaSettings, tmp_path: Path, services: list[Service]) -> None:
    topics = Topics(kafka.topic_prefix)
    metrics_port = free_port()
    worker = Service(["services.scoring", "worker"], {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NURTURE_TOPIC_PREFIX": kafka.topic_prefix,
        "NURTURE_SCORING_STATE_DIR": str(tmp_path / "state"),
        "NURTURE_SCORING_METRICS_PORT": str(metrics_port),
        # no periodic commit during the test: whatever is committed, the shutdown committed
        "NURTURE_SCORING_COMMIT_INTERVAL_SECONDS": "3600"}, tmp_path / "scoring.log")
    services.append(worker)
    await wait_until(lambda: worker.alive() and "Worker ready" in worker.output(),
                     timeout=120, what="scoring worker ready")
    events = [{"specversion": "1.0", "id": f"e-{i}", "source": "sigterm",
               "type": "web.page_viewed", "subject": f"lead-{i % 17}",
               "time": "2026-11-20T10:00:00Z", "data": {"url": "https://x.io/pricing"}}
              for i in range(60)]
    await produce(kafka.bootstrap_servers, topics.events,
                  [(e["subject"].encode(), orjson.dumps(e)) for e in events])
    await read_topic(kafka.bootstrap_servers, topics.scored_events,
                     until=lambda rs: len(rs) >= len(events), timeout=120)

    assert worker.terminate() == 0, worker.output()[-3000:]

    state, members, offsets = await group_state(kafka.bootstrap_servers,
                                                f"{kafka.topic_prefix}nurture-scoring")
    assert sum(o for (topic, _), o in offsets.items() if topic == topics.events) == len(events)
    assert (state, members) == ("Empty", 0), "the worker did not leave its group"


async def test_orchestrator_commits_what_it_recorded_and_leaves_its_group(
        kafka: KafkaSettings, database_url: str, tmp_path: Path,
        services: list[Service]) -> None:
    schema = f"sig_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(orchestrator_upgrade, database_url, schema)
    topics = Topics(kafka.topic_prefix)
    port = free_port()
    orchestrator = Service(["services.orchestrator", "serve"], {
        "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NURTURE_TOPIC_PREFIX": kafka.topic_prefix, "NURTURE_ORCHESTRATOR_DB_SCHEMA": schema,
        "NURTURE_ORCHESTRATOR_API_TOKEN": "t", "NURTURE_ORCHESTRATOR_PORT": str(port),
        "NURTURE_ORCHESTRATOR_PROGRAMS": str(ROOT / "config/programs"),
        "NURTURE_ORCHESTRATOR_POLICY": str(ROOT / "config/contact-policy.yaml")},
        tmp_path / "orchestrator.log")
    services.append(orchestrator)
    await wait_until(lambda: orchestrator.alive() and healthy(f"http://127.0.0.1:{port}/readyz"),
                     timeout=120, what="orchestrator ready")

    def scored(i: int) -> tuple[bytes, bytes]:
        lead = f"lead-{i % 50}"
        return lead.encode(), scored_record(
            {"specversion": "1.0", "id": f"e-{i}", "source": "sigterm",
             "type": "web.page_viewed", "subject": lead, "time": "2026-11-20T10:00:00Z",
             "data": {"url": "https://x.io/"}})

    total = 3000
    await produce(kafka.bootstrap_servers, topics.scored_events, [scored(i) for i in range(total)])
    group = f"{kafka.topic_prefix}nurture-orchestrator"

    async def started() -> bool:
        _, _, offsets = await group_state(kafka.bootstrap_servers, group)
        return sum(offsets.values()) > 0

    # SIGTERM while the consumer is (most likely) still working through the backlog
    await wait_until(started, timeout=120, what="first commit")
    assert orchestrator.terminate() == 0, orchestrator.output()[-3000:]

    state, members, offsets = await group_state(kafka.bootstrap_servers, group)
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        recorded = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".processed_events')  # noqa: S608 - our schema
    finally:
        await conn.close()
    # every record up to the committed offsets is recorded, and nothing beyond them
    assert sum(offsets.values()) == recorded
    assert (state, members) == ("Empty", 0), "the orchestrator did not leave its group"


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    await sink.start()
    yield sink
    await sink.stop()


async def test_dispatch_commits_what_it_recorded_and_leaves_its_groups(
        kafka: KafkaSettings, database_url: str, tmp_path: Path, smtp: SmtpSink,
        services: list[Service]) -> None:
    schema = f"sigd_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(dispatch_upgrade, database_url, schema)
    topics = Topics(kafka.topic_prefix)
    port = free_port()
    dispatch = Service(["services.dispatch", "serve"], {
        "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NURTURE_TOPIC_PREFIX": kafka.topic_prefix, "NURTURE_DISPATCH_DB_SCHEMA": schema,
        "NURTURE_DISPATCH_PORT": str(port), "NURTURE_DISPATCH_SMTP_PORT": str(smtp.port),
        "NURTURE_DISPATCH_TEMPLATES": str(ROOT / "config/templates"),
        "NURTURE_TRACKING_SECRET": "sigterm-tracking-secret-0123456789"},
        tmp_path / "dispatch.log")
    services.append(dispatch)
    await wait_until(lambda: dispatch.alive() and healthy(f"http://127.0.0.1:{port}/readyz"),
                     timeout=120, what="dispatch ready")
    commands = [command(f"lead-{i}") for i in range(1500)]
    await produce(kafka.bootstrap_servers, topics.dispatch,
                  [(c["lead_id"].encode(), orjson.dumps(c)) for c in commands])
    group = f"{kafka.topic_prefix}nurture-dispatch"

    async def started() -> bool:
        _, _, offsets = await group_state(kafka.bootstrap_servers, group)
        return sum(offsets.values()) > 0

    await wait_until(started, timeout=120, what="first commit")
    assert dispatch.terminate() == 0, dispatch.output()[-3000:]

    state, members, offsets = await group_state(kafka.bootstrap_servers, group)
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        query = f'SELECT origin_partition, origin_offset FROM "{schema}".deliveries'  # noqa: S608
        rows = await conn.fetch(query)
    finally:
        await conn.close()
    recorded: dict[int, set[int]] = {}
    for row in rows:
        recorded.setdefault(row["origin_partition"], set()).add(row["origin_offset"])
    committed = {p: o for (t, p), o in offsets.items() if t == topics.dispatch}
    # per partition: exactly the records below the committed offset are recorded
    for partition in set(recorded) | set(committed):
        assert recorded.get(partition, set()) == set(range(committed.get(partition, 0)))
    assert (state, members) == ("Empty", 0), "dispatch did not leave its command group"
    suppressions = await group_state(kafka.bootstrap_servers, f"{group}-suppressions")
    assert suppressions[:2] == ("Empty", 0), "dispatch did not leave its suppressions group"


async def test_ingest_answers_a_request_in_flight_at_sigterm(
        kafka: KafkaSettings, tmp_path: Path, services: list[Service]) -> None:
    import hashlib

    port = free_port()
    keys = [{"name": "t", "sha256": hashlib.sha256(DEV_KEY.encode()).hexdigest()}]
    ingest = Service(["services.ingest", "serve"], {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NURTURE_TOPIC_PREFIX": kafka.topic_prefix, "NURTURE_INGEST_PORT": str(port),
        "NURTURE_INGEST_API_KEYS": orjson.dumps(keys).decode(),
        "NURTURE_INGEST_SHUTDOWN_GRACE_SECONDS": "20"}, tmp_path / "ingest.log")
    services.append(ingest)
    await wait_until(lambda: ingest.alive() and healthy(f"http://127.0.0.1:{port}/readyz"),
                     timeout=120, what="ingest ready")
    event_id = f"inflight-{uuid.uuid4().hex[:8]}"
    body = orjson.dumps({"specversion": "1.0", "id": event_id, "source": "sigterm",
                         "type": "web.page_viewed", "subject": "lead-1",
                         "time": datetime.now(UTC).isoformat(),
                         "data": {"url": "https://x.io/pricing"}})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {DEV_KEY}\r\nContent-Type: application/cloudevents+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    # the request has begun (headers and half the body) when SIGTERM arrives
    writer.write(head + body[: len(body) // 2])
    await writer.drain()
    ingest.proc.send_signal(signal.SIGTERM)
    await wait_until(lambda: "Shutting down" in ingest.output() or ingest.proc.poll() is not None,
                     timeout=60, what="ingest shutting down")

    async def refused() -> bool:
        return not await healthy(f"http://127.0.0.1:{port}/healthz")

    # new connections are refused from now on ...
    await wait_until(refused, timeout=30, what="ingest to stop accepting connections")
    # ... but the request in flight completes
    writer.write(body[len(body) // 2:])
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), GRACE)
    response = status_line + await asyncio.wait_for(reader.read(), GRACE)
    writer.close()
    assert status_line.split()[1] == b"202", response.decode(errors="replace")
    assert ingest.proc.wait(GRACE) == 0, ingest.output()[-3000:]
    records = await read_topic(kafka.bootstrap_servers, Topics(kafka.topic_prefix).events,
                               until=lambda rs: any(event_id.encode() in r.value for r in rs))
    assert [r for r in records if event_id.encode() in (r.value or b"")]
