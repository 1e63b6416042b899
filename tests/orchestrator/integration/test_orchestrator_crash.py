"""kill -9 of the orchestrator process in the middle of its work, then a restart: every lead gets
its command, none gets two different commands (at-least-once publishing may repeat the *same*
message id, which dispatch delivers once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from deploy.local.stack import free_port
from schemas.vocabulary import rfc3339
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.orchestrator.adapters.migrate import upgrade
from tests.support import isolated_kafka, read_topic, scored_record

# events as a publisher sends them now: a program's max_event_age (3 days by default)
# judges their age against the orchestrator's clock, the wall clock here
RECENT = rfc3339(time.time() - 60)

ROOT = Path(__file__).resolve().parents[3]
LEADS = 1500
PROGRAM = """\
id: hello
version: 1
name: Hello
trigger: {event: web.page_viewed}
steps:
  - {id: hi, send: {channel: email, template: hello}}
"""
POLICY = "default_timezone: UTC\nquiet_hours: null\ncaps: []\nsms_requires_consent: true\n"


def scored(lead: str, eid: str, etype: str, data: dict[str, object]) -> bytes:
    return scored_record({"specversion": "1.0", "id": eid, "source": "crash", "type": etype,
                          "subject": lead, "time": RECENT, "data": data})


async def test_kill_9_mid_batch_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, kafka_bootstrap: str, database_url: str) -> None:
    kafka: KafkaSettings = await isolated_kafka(kafka_bootstrap)
    schema = f"crash_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    (tmp_path / "programs").mkdir()
    (tmp_path / "programs" / "hello.yaml").write_text(PROGRAM)
    (tmp_path / "policy.yaml").write_text(POLICY)
    topics = Topics(kafka.topic_prefix)

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, linger_ms=20)
    await producer.start()
    try:
        futures = []
        for i in range(LEADS):
            lead = f"lead-{i}"
            for value in (scored(lead, f"{lead}-p", "crm.lead_upserted",
                                 {"email": f"{lead}@example.com"}),
                          scored(lead, f"{lead}-v", "web.page_viewed", {"url": "https://x.io/"})):
                futures.append(await producer.send(topics.scored_events, value,
                                                   key=lead.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS":
           kafka.bootstrap_servers, "NURTURE_TOPIC_PREFIX": kafka.topic_prefix,
           "NURTURE_ORCHESTRATOR_DB_SCHEMA": schema,
           "NURTURE_ORCHESTRATOR_PROGRAMS": str(tmp_path / "programs"),
           "NURTURE_ORCHESTRATOR_POLICY": str(tmp_path / "policy.yaml"),
           "NURTURE_ORCHESTRATOR_API_TOKEN": "t", "NURTURE_ORCHESTRATOR_PORT": str(free_port()),
           "NURTURE_LOG_FORMAT": "text"}
    log = tmp_path / "orchestrator.log"

    def start() -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "-m", "services.orchestrator", "serve"],
                                    env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    first = start()
    try:
        await read_topic(kafka.bootstrap_servers, topics.dispatch, until=lambda rs: len(rs) >= 1,
                         timeout=90)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    second = start()
    try:
        def every_lead(records: list[object]) -> bool:
            return len({orjson.loads(r.value)["lead_id"] for r in records}) >= LEADS  # type: ignore[attr-defined]
        records = await read_topic(kafka.bootstrap_servers, topics.dispatch, until=every_lead,
                                   timeout=180)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)

    ids_per_lead: dict[str, set[str]] = defaultdict(set)
    for record in records:
        body = orjson.loads(record.value)
        ids_per_lead[body["lead_id"]].add(body["message_id"])
    assert len(ids_per_lead) == LEADS
    assert all(len(ids) == 1 for ids in ids_per_lead.values())
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        sent = await conn.fetchval(f'SELECT count(*) FROM "{schema}".messages '  # noqa: S608
                                   "WHERE status = 'sent'")
    finally:
        await conn.close()
    assert sent == LEADS
