"""Through the real services (ingest, a scoring worker process, the orchestrator, dispatch with an
SMTP peer, on the real Kafka and PostgreSQL): a lead with a distinctive email, phone and name is
scored, enrolled and mailed; then

- no log line of any service, and no /metrics output, holds that email, phone or name, nor the
  raw lead id (services log `lead_hash`), nor any API key, token or secret the run used — checked
  after the delivery and again at the end, after the erasure;
- `DELETE /v1/leads/{id}` leaves no row holding the PII in the orchestrator's or dispatch's
  tables, nor any row naming the lead in the orchestrator's, nor in dispatch's but its
  all-channel `erased` suppression; the scoring changelog's last record for the lead is a
  tombstone; and a later event of the lead starts an empty lead (no PII)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tests.dispatch.integration.dispatch_harness import SECRET, SmtpSink, dispatch_service
from tests.scoring.integration.test_worker import MODEL
from tests.support import (
    ScoringWorker,
    isolated_kafka,
    read_topic,
    scoring_worker,
    serve,
    wait_until,
)

TAG = uuid.uuid4().hex[:8]
LEAD = f"lead-pii-{TAG}-Jx9"  # distinctive: any log line holding it is a raw lead id
EMAIL = f"zelda.{TAG}@pii-probe.example"
PHONE = f"+1415{int(TAG, 16) % 10_000_000:07d}"
FIRST, LAST = f"Quintessa{TAG}", f"Vandermeer{TAG}"
PII = (EMAIL, PHONE, FIRST, LAST)
API_KEY = f"nk_pii_{uuid.uuid4().hex}"
ORCH_TOKEN, ADMIN_TOKEN = f"orch-{uuid.uuid4().hex}", f"admin-{uuid.uuid4().hex}"
ERASURE = "nurture-orchestrator/erasure"  # the source of lead.erased (processed-event marks)
SECRETS = (API_KEY, ORCH_TOKEN, ADMIN_TOKEN, SECRET)
HELLO = Program(id="pii-hello", version=1, name="Hello", priority=50,
                trigger=Trigger("threshold", model="itest", threshold="mql"),
                steps=(Step("hello", "send", channel="email", template="pricing-followup"),))


class Captured(logging.Handler):
    """Every log record of the in-process services, formatted as they ship (JSON, extras in)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # not ours: the test's SMTP peer and HTTP client, and the access log of the test's
        # uvicorn (`tests.support.serve`; the services run with it off: common/http.py)
        if not record.name.startswith(("mail.", "httpx", "uvicorn.access")):
            self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler, root = Captured(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def scorer(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[ScoringWorker]:
    async with scoring_worker(kafka, tmp_path, MODEL, log_format="json") as worker:
        yield worker


def event(eid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": eid, "source": "https://www.example.com",
            "type": etype, "subject": LEAD, "data": data}


async def rows_matching(database_url: str, schema: str, needles: tuple[str, ...]) -> list[str]:
    """`table: row` for every row of every table of `schema` whose text holds a needle."""
    engine = create_async_engine(database_url)
    found: list[str] = []
    try:
        async with engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema})).scalars().all()
            for table in tables:
                rows = (await conn.execute(text(
                    f'SELECT t::text FROM "{schema}"."{table}" t'))).scalars().all()  # noqa: S608
                found += [f"{table}: {row[:200]}" for row in rows
                          if any(n in row or n.encode().hex() in row for n in needles)]
    finally:
        await engine.dispose()
    return found


def leaks(captured: Captured, scorer: ScoringWorker, metrics: list[str]) -> list[Any]:
    """(where, line) for each log or metrics line holding the PII, the lead id or a secret."""
    outputs = {"in-process logs": "\n".join(captured.lines),
               "scoring worker log": scorer.log.read_text(errors="replace"),
               "metrics": "\n".join(metrics)}
    return [(where, line[:300]) for where, out in outputs.items()
            for line in out.splitlines() if any(n in line for n in (*PII, LEAD, *SECRETS))]


async def test_no_pii_in_logs_and_erasure_leaves_none(
        kafka: KafkaSettings, database_url: str, scorer: ScoringWorker, captured: Captured,
        tmp_path: Path) -> None:
    topics = Topics(kafka.topic_prefix)
    schema = f"pii_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    smtp = SmtpSink()
    await smtp.start()
    ingest_app = create_ingest(bootstrap_ingest(IngestSettings(api_keys=[ApiKeyConfig(
        name="site", sha256=hash_key(API_KEY))]), kafka))
    orch_app = create_orchestrator(bootstrap(OrchestratorSettings(
        DATABASE_URL=database_url, db_schema=schema, api_token=ORCH_TOKEN,
        admin_token=ADMIN_TOKEN, stage_model="itest", timer_poll_seconds=0.1,
        relay_idle_seconds=0.05), kafka,
        Decider([HELLO], ContactPolicy(caps=(), quiet_hours=None), stage_model="itest")))
    orch_auth = {"Authorization": f"Bearer {ORCH_TOKEN}"}
    try:
        async with serve(ingest_app) as ingest, serve(orch_app) as orch, \
                dispatch_service(database_url, kafka, smtp_port=smtp.port) as dispatch, \
                httpx.AsyncClient(timeout=30) as client:
            async def ready() -> bool:
                codes = [(await client.get(f"{url}/readyz")).status_code for url in (ingest, orch)]
                return codes == [200, 200]
            await wait_until(ready, timeout=60, what="ingest and orchestrator ready")
            batch = [event("p1", "crm.lead_upserted", {
                         "email": EMAIL, "phone": PHONE, "first_name": FIRST, "last_name": LAST,
                         "seniority": "vp"}),
                     event("d1", "web.form_submitted", {"form_id": "demo",
                                                        "form_type": "demo_request"})]
            r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(batch), headers={
                "Authorization": f"Bearer {API_KEY}",
                "Content-Type": "application/cloudevents-batch+json"})
            assert r.status_code == 202, r.text
            await wait_until(lambda: any(EMAIL in to for _, tos in smtp.envelopes for to in tos),
                             timeout=120, what="the email reached the SMTP peer")
            assert FIRST in smtp.raw[0].decode(errors="replace")  # the PII was really used

            # 1. nothing personal or secret in any log or metrics output
            metrics = [(await client.get(f"{url}/metrics")).text
                       for url in (ingest, orch, dispatch.url,
                                   f"http://127.0.0.1:{scorer.metrics_port}")]
            assert len(captured.lines) > 5 and "Worker ready" in scorer.log.read_text()
            assert leaks(captured, scorer, metrics) == []

            # 2. erasure, once the orchestrator has decided the email's message.sent outcome: one
            # still on its way after both calls would start an empty lead again (no PII, but its
            # id: docs/security.md), which a slow machine showed once
            async def outcome_decided() -> bool:
                return bool(await rows_matching(database_url, schema, ("nurture-dispatch",)))
            await wait_until(outcome_decided, timeout=90, what="the message.sent outcome decided")
            r = await client.delete(f"{orch}/v1/leads/{LEAD}", headers=orch_auth)
            assert (r.status_code, r.json()["found"]) == (202, True)
            # idempotent: a second call is accepted too. It may find a lead again: an outcome
            # event already on its way (message.sent of the email) starts an empty lead, with no
            # PII, which the second call erases as well (docs/security.md)
            r = await client.delete(f"{orch}/v1/leads/{LEAD}", headers=orch_auth)
            assert r.status_code == 202 and r.json()["lead_id"] == LEAD
            changelog = f"{kafka.topic_prefix}nurture-scoring-lead-state-changelog"

            def tombstoned(records: list[Any]) -> bool:
                mine = [rec for rec in records if rec.key == LEAD.encode()]
                return bool(mine) and mine[-1].value is None
            await read_topic(kafka.bootstrap_servers, changelog, until=tombstoned, timeout=90)

            async def scrubbed() -> bool:  # both lead.erased came back to the orchestrator
                left = await rows_matching(database_url, dispatch.settings.db_schema,
                                           (*PII, LEAD))
                return len(await rows_matching(database_url, schema, (ERASURE,))) == 2 and not (
                    await rows_matching(database_url, schema, (*PII, LEAD))) and len(left) == 1 \
                    and left[0].startswith(f"suppressions: ({LEAD},*,erased,")
            await wait_until(scrubbed, timeout=90, what="no PII rows left")

            # 3. a later event starts an empty lead: no PII comes back
            r = await client.post(f"{ingest}/v1/events", headers={
                "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
                content=orjson.dumps(event("v9", "web.page_viewed",
                                           {"url": "https://x.io/pricing", "path": "/pricing"})))
            assert r.status_code == 202

            async def back() -> bool:
                got = await client.get(f"{orch}/v1/leads/{LEAD}", headers=orch_auth)
                return got.status_code == 200
            await wait_until(back, timeout=90, what="the lead's later event processed")
            view = (await client.get(f"{orch}/v1/leads/{LEAD}", headers=orch_auth)).text
            assert not [n for n in PII if n in view]
            assert await rows_matching(database_url, schema, PII) == []
            scored = await read_topic(kafka.bootstrap_servers, topics.scored_events,
                                      until=lambda rs: any(b'"v9"' in rec.value for rec in rs))
            last = orjson.loads(next(rec.value for rec in scored if b'"v9"' in rec.value))
            assert last["score"]["models"]["itest"]["fit"] == 0.0  # the profile was forgotten
            assert leaks(captured, scorer, []) == []  # the erasure and after logged no more
    finally:
        await smtp.stop()
