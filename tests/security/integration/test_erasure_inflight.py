"""Erasure against messages already on their way, on the real Kafka, PostgreSQL and an SMTP peer:

- dispatch: a delivery in the middle of its SMTP call when `lead.erased` arrives, whose attempt
  then fails transiently, is not retried; a command for the lead consumed after the erasure
  (the consumer's lag) is not sent. Neither reaches the SMTP peer, nobody is told about them
  (no outcome event), and afterwards no dispatch row holds the person's email, phone or name,
  nor the lead id except the all-channel `erased` suppression;
- orchestrator: an enrollment still active when the lead is erased ends (`exited`, `erased`)
  instead of staying active under its anonymous id with its timers gone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common.config.settings import KafkaSettings
from services.dispatch.adapters import tables as dt
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tests.dispatch.integration.dispatch_harness import (
    SmtpSink,
    command,
    decoded,
    dispatch_service,
    produce,
)
from tests.security.integration.test_erasure_and_pii_logs import rows_matching
from tests.support import isolated_kafka, publish_erasure, read_topic, serve, wait_until

TAG = uuid.uuid4().hex[:8]
LEAD = f"lead-inflight-{TAG}"
EMAIL, PHONE = f"yorick.{TAG}@inflight-probe.example", f"+1628{int(TAG, 16) % 10_000_000:07d}"
FIRST, LAST = f"Ottoline{TAG}", f"Brackenbury{TAG}"
PII = (EMAIL, PHONE, FIRST, LAST)


class GatedSink(SmtpSink):
    """An SMTP peer that holds every DATA until `gate` opens, answers the first one
    `451 try later` and accepts the rest (recording them, like SmtpSink)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.data_calls = 0

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        first = self.data_calls == 1
        await self.gate.wait()
        if first:
            return "451 4.3.0 try again later"
        return await super().handle_DATA(server, session, envelope)


def personal(message_id: str) -> dict[str, Any]:
    """A command to email the erased-to-be lead, carrying their profile."""
    cmd = command(LEAD, message_id=message_id)
    cmd["context"] |= {"email": EMAIL, "phone": PHONE, "first_name": FIRST, "last_name": LAST}
    return cmd


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def sink() -> AsyncIterator[GatedSink]:
    smtp = GatedSink()
    await smtp.start()
    try:
        yield smtp
    finally:
        smtp.gate.set()
        await smtp.stop()


async def test_erasure_stops_a_message_mid_attempt_and_one_still_on_the_topic(
        kafka: KafkaSettings, database_url: str, sink: GatedSink) -> None:
    d = dt.deliveries
    expired, inflight, lagging, other = (f"m-{name}-{TAG}" for name in (
        "expired", "inflight", "lagging", "other"))
    async with dispatch_service(database_url, kafka, smtp_port=sink.port,
                                smtp_timeout_seconds=60) as run:
        async def row(message_id: str) -> Any:
            async with run.engine.connect() as conn:
                return (await conn.execute(select(d).where(d.c.message_id == message_id))).first()

        async def status_is(message_id: str, status: str) -> bool:
            found = await row(message_id)
            return found is not None and found.status == status

        # 1. the lead's email is in the middle of its SMTP call when the erasure arrives (an
        # older, expired message of the lead shows when dispatch has processed the erasure)
        await produce(run.kafka, [personal(expired) | {"expires_at": "2020-01-01T00:00:00Z"}])
        await wait_until(lambda: status_is(expired, "expired"), timeout=60, what="expired")
        await produce(run.kafka, [personal(inflight)])
        await wait_until(lambda: sink.data_calls == 1, timeout=60, what="DATA reached the peer")
        assert await status_is(inflight, "sending")
        await publish_erasure(run.kafka, LEAD)

        async def rekeyed(message_id: str) -> bool:
            found = await row(message_id)
            return found is not None and found.lead_id.startswith("erased-")
        await wait_until(lambda: rekeyed(expired), timeout=60, what="dispatch saw the erasure")
        assert await status_is(inflight, "sending")  # left alone until its call ends
        sink.gate.set()  # ... which fails transiently: before the fix, a retry then sent it

        async def settled(message_id: str) -> bool:
            found = await row(message_id)
            return found is not None and found.status == "suppressed"
        await wait_until(lambda: settled(inflight), timeout=30, what="the in-flight one dropped")

        # 2. a command for the lead consumed after the erasure (it was in the consumer's lag)
        await produce(run.kafka, [personal(lagging)])
        await wait_until(lambda: settled(lagging), timeout=60, what="the late one suppressed")

        # 3. another lead's email still goes out, and its outcome event marks the end of the
        # outbox (relayed in order): nothing about the erased lead's messages came before it
        await produce(run.kafka, [command("lead-not-erased", message_id=other)])
        events = decoded(await read_topic(
            kafka.bootstrap_servers, run.topics.events, timeout=60,
            until=lambda rs: any(e["type"] == "message.sent" for e in decoded(rs))))
        told = sorted((e["data"]["message_id"], e["type"]) for e in events
                      if e["type"] != "lead.erased")
        assert told == sorted([(expired, "message.suppressed"), (other, "message.sent")])

        assert [tos for _, tos in sink.envelopes] == [["lead-not-erased@example.com"]]
        assert sink.data_calls == 2  # the in-flight 451 and the other lead's email: no retry
        for message_id in (expired, inflight, lagging):
            found = await row(message_id)
            assert found.lead_id.startswith("erased-") and found.payload is None
            assert found.next_attempt_at is None
            assert found.last_error == ("erased" if message_id == lagging else None)

        async def only_the_suppression_names_the_lead() -> bool:
            left = await rows_matching(database_url, run.settings.db_schema, (*PII, LEAD))
            return len(left) == 1 and left[0].startswith(f"suppressions: ({LEAD},*,erased,")
        await wait_until(only_the_suppression_names_the_lead, timeout=30,
                         what="no dispatch row with the PII or the lead id but the suppression")


MANUAL = Program(id="erase-manual", version=1, name="Manual", trigger=Trigger("manual"),
                 steps=(Step("wait", "wait", seconds=86400),))


async def test_erasure_ends_active_enrollments(database_url: str) -> None:
    schema = f"er_{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    token = f"tok-{uuid.uuid4().hex}"
    app = create_orchestrator(bootstrap(
        OrchestratorSettings(DATABASE_URL=database_url, db_schema=schema, api_token=token,
                             enrollment_token=f"{token}-enroll"),
        KafkaSettings(), Decider([MANUAL], ContactPolicy(caps=(), quiet_hours=None)),
        run_workers=False))
    auth = {"Authorization": f"Bearer {token}"}
    enrolling = {"Authorization": f"Bearer {token}-enroll"}
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url, headers=auth) as client:
            r = await client.post(f"/v1/leads/{LEAD}/enrollments", json={"program": MANUAL.id},
                                  headers=enrolling)
            assert r.status_code == 201 and r.json()["status"] == "active"
            r = await client.delete(f"/v1/leads/{LEAD}")
            assert (r.status_code, r.json()["found"]) == (202, True)
            stats = next(p for p in (await client.get("/v1/programs")).json()
                         if p["id"] == MANUAL.id)
            assert (stats["entered"], stats["active"], stats["exited"]) == (1, 0, {"erased": 1})
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT lead_id, status, exit_reason, exited_at FROM enrollments"))).all()
            timers = (await conn.execute(text("SELECT count(*) FROM timers"))).scalar()
        assert len(rows) == 1 and timers == 0
        lead_id, status, reason, exited_at = rows[0]
        assert lead_id.startswith("erased-") and (status, reason) == ("exited", "erased")
        assert exited_at is not None
    finally:
        await engine.dispose()
