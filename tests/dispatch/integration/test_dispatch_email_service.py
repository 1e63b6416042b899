"""Dispatch against the real Kafka, PostgreSQL and an SMTP server on loopback: a command is
delivered as one well-formed email, a redelivered command sends nothing, a server that is down
is retried and then dead-lettered, a template with a missing variable fails the message whole,
expired and suppressed messages are not sent, and attempts interrupted by a crash are settled
without a blind resend."""

from __future__ import annotations

import argparse
import base64
import html
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import update

from deploy.local.stack import free_port
from schemas import validate_event
from services.common.config.settings import KafkaSettings
from services.common.kafka.deadletter import REPLAYED_HEADER
from services.common.observability.logging import lead_hash
from services.common.tracking import verify
from services.dispatch.adapters import repository as repo
from services.dispatch.adapters import tables as t
from services.operator import dlq
from tests.dispatch.integration.dispatch_harness import (
    SECRET,
    Running,
    SmtpSink,
    command,
    dead_letters,
    dispatch_service,
    metric,
    of,
    outcomes,
    produce,
)
from tests.support import isolated_kafka, publish_erasure, wait_until


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


@pytest.fixture
async def dispatch(database_url: str, kafka: KafkaSettings,
                   smtp: SmtpSink) -> AsyncIterator[Running]:
    async with dispatch_service(database_url, kafka, smtp_port=smtp.port,
                                from_address="Acme <hi@acme.example>",
                                unsubscribe_mailto="unsubscribe@acme.example",
                                tracking_base_url="https://t.acme.example") as run:
        yield run


async def test_the_sent_line_names_the_message_and_the_event_behind_it_not_the_lead(
        dispatch: Running, smtp: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    cmd = command("lead-1", event_id="evt-pricing-7")
    with caplog.at_level(logging.INFO, logger="services.dispatch.service_layer.handlers"):
        await produce(dispatch.kafka, [cmd])
        await outcomes(dispatch, until=lambda es: of(es, cmd["message_id"], "message.sent"))
    (line,) = [r.__dict__ for r in caplog.records if r.getMessage() == "message sent"]
    assert (line["message_id"], line["event_id"], line["program"], line["step"],
            line["channel"]) == (cmd["message_id"], "evt-pricing-7", "pricing-abandoner",
                                 "pricing-followup", "email")
    assert line["lead_hash"] == lead_hash("lead-1")
    assert "lead-1" not in orjson.dumps({k: str(v) for k, v in line.items()}).decode()


async def test_a_command_becomes_one_email_with_unsubscribe_and_tracking(
        dispatch: Running, smtp: SmtpSink) -> None:
    cmd = command("lead-1")
    await produce(dispatch.kafka, [cmd])
    events = await outcomes(dispatch, until=lambda es: of(es, cmd["message_id"],
                                                          "message.sent"))
    (sent,) = of(events, cmd["message_id"])
    assert validate_event(sent) == []
    assert (sent["subject"], sent["data"]["attempt"]) == ("lead-1", 1)
    assert sent["data"]["provider_message_id"] == f"<{cmd['message_id']}@acme.example>"

    (mail,) = smtp.received
    assert smtp.envelopes == [("hi@acme.example", ["lead-1@example.com"])]
    assert mail["Message-ID"] == f"<{cmd['message_id']}@acme.example>"
    assert mail["Subject"] == "Questions about Nurture pricing for Acme?"
    assert mail["To"] == "Ada Lovelace <lead-1@example.com>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = (p.strip(" <>") for p in mail["List-Unsubscribe"].split(","))
    assert mailto == "mailto:unsubscribe@acme.example?subject=unsubscribe"
    (header,) = [line for line in smtp.raw[0].split(b"\r\n")
                 if line.startswith(b"List-Unsubscribe:")]
    assert header == f"List-Unsubscribe: <{https}>, <{mailto}>".encode()  # one line, no =?...?=
    now = datetime.now(UTC).timestamp()
    assert https.startswith("https://t.acme.example/t/unsubscribe/")
    assert verify(https.rsplit("/", 1)[1], keys=[SECRET.encode()], now=now,
                  kind="unsubscribe").lead_id == "lead-1"

    assert mail.get_content_type() == "multipart/alternative"
    text, page = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and page is not None
    assert "Hi Ada," in text.get_content()
    body = page.get_content()
    clicks = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', body)
              if "/t/click/" in h]
    assert clicks, "the call to action is click-tracked"
    claims = verify(clicks[0].rsplit("/", 1)[1], keys=[SECRET.encode()], now=now, kind="click")
    assert (claims.url, claims.message_id) == ("https://www.example.com/pricing",
                                               cmd["message_id"])
    assert re.search(r'<img src="https://t\.acme\.example/t/open/[^"]+"', body)

    async with dispatch.engine.connect() as conn:
        row = await repo.get_delivery(conn, message_id=cmd["message_id"])
    assert row is not None
    assert (row.status, row.attempts, row.provider_id, row.payload) == (
        "sent", 1, f"<{cmd['message_id']}@acme.example>", None)


async def test_the_same_command_twice_sends_one_email(dispatch: Running,
                                                      smtp: SmtpSink) -> None:
    first = command("lead-2")
    await produce(dispatch.kafka, [first, first])
    await outcomes(dispatch, until=lambda es: of(es, first["message_id"], "message.sent"))
    # redelivered after it was sent, then a marker on the same partition (same lead): once the
    # marker is out, the redelivery has been consumed
    marker = command("lead-2")
    await produce(dispatch.kafka, [first, marker])
    events = await outcomes(dispatch, until=lambda es: of(es, marker["message_id"],
                                                          "message.sent"))
    assert [m["Message-ID"] for m in smtp.received] == [
        f"<{first['message_id']}@acme.example>", f"<{marker['message_id']}@acme.example>"]
    assert len(of(events, first["message_id"])) == 1
    assert await metric(dispatch, "nurture_dispatch_duplicate_commands_total") == 2


async def test_a_transient_smtp_reply_is_retried(dispatch: Running, smtp: SmtpSink) -> None:
    smtp.replies = ["451 4.3.0 try again later"]
    cmd = command("lead-3")
    await produce(dispatch.kafka, [cmd])
    events = await outcomes(dispatch, until=lambda es: of(es, cmd["message_id"],
                                                          "message.sent"))
    failed, sent = of(events, cmd["message_id"])
    assert (failed["type"], failed["data"]["reason"], failed["data"]["retryable"]) == (
        "message.failed", "smtp_4xx", True)
    assert sent["data"]["attempt"] == 2
    assert len(smtp.received) == 1
    assert await metric(dispatch, 'nurture_dispatch_retries_total{channel="email"}') == 1


async def test_a_permanent_smtp_reply_fails_at_once(dispatch: Running, smtp: SmtpSink) -> None:
    smtp.replies = ["554 5.7.1 rejected"]
    cmd = command("lead-4")
    await produce(dispatch.kafka, [cmd])
    events = await outcomes(dispatch, until=lambda es: of(es, cmd["message_id"],
                                                          "message.failed"))
    (failed,) = of(events, cmd["message_id"])
    assert (failed["data"]["reason"], failed["data"]["retryable"]) == ("smtp_5xx", False)
    (letter,) = await dead_letters(dispatch, 1)
    assert letter["error"] == "smtp_5xx: SMTP 554 on DATA"
    assert orjson.loads(base64.b64decode(letter["value_b64"])) == cmd


async def test_a_missing_variable_dead_letters_the_command_with_the_reason(
        database_url: str, kafka: KafkaSettings, smtp: SmtpSink, tmp_path: Path) -> None:
    (tmp_path / "strict").mkdir()
    (tmp_path / "strict" / "subject.txt").write_text("For {{ company }}")
    (tmp_path / "strict" / "body.txt").write_text("Hi {{ first_name }} at {{ company }}")
    cmd = command("lead-5", template="strict")
    cmd["context"].pop("company")
    async with dispatch_service(database_url, kafka, smtp_port=smtp.port,
                                templates=str(tmp_path)) as run:
        await produce(kafka, [cmd])
        (letter,) = await dead_letters(run, 1)
        events = await outcomes(run, until=lambda es: of(es, cmd["message_id"]))
    assert letter["error"] == "template_error: strict/subject.txt: 'company' is undefined"
    assert letter["consumer"] == "nurture-dispatch"
    assert letter["origin"]["topic"] == run.topics.dispatch
    (failed,) = events
    assert (failed["type"], failed["data"]["reason"]) == ("message.failed", "template_error")
    assert validate_event(failed) == []
    assert smtp.received == []


REPLAY_TEMPLATE_ERRORS = argparse.Namespace(command="replay", since="1h", reason="template_error",
                                            consumer="nurture-dispatch", dry_run=False)


def needs_company(templates: Path, lead: str) -> dict[str, Any]:
    """A template `strict` that needs `company`, and a command for `lead` without it."""
    (templates / "strict").mkdir()
    (templates / "strict" / "subject.txt").write_text("For {{ company }}")
    (templates / "strict" / "body.txt").write_text("Hi {{ first_name }}")
    cmd = command(lead, template="strict")
    cmd["context"].pop("company")
    return cmd


async def delivery(run: Running, message_id: str) -> repo.Delivery | None:
    async with run.engine.connect() as conn:
        return await repo.get_delivery(conn, message_id=message_id)


async def test_a_dead_letter_replayed_after_the_fix_is_sent_once(
        database_url: str, kafka: KafkaSettings, smtp: SmtpSink, tmp_path: Path) -> None:
    cmd = needs_company(tmp_path, "lead-6")
    async with dispatch_service(database_url, kafka, smtp_port=smtp.port,
                                templates=str(tmp_path)) as run:
        await produce(kafka, [cmd])
        await dead_letters(run, 1)
    # the fix: a template that no longer needs `company`; dispatch restarts with it
    (tmp_path / "strict" / "subject.txt").write_text("For you")
    async with dispatch_service(database_url, kafka, schema=run.settings.db_schema,
                                smtp_port=smtp.port, templates=str(tmp_path)) as run:
        assert await dlq.run(REPLAY_TEMPLATE_ERRORS, kafka) == 0
        await wait_until(lambda: len(smtp.received) == 1, timeout=30, what="the email")
        assert await dlq.run(REPLAY_TEMPLATE_ERRORS, kafka) == 0  # again, by mistake
        await wait_until(lambda: metric(run, "nurture_dispatch_duplicate_commands_total"),
                         timeout=30, what="the second copy consumed")
        row = await delivery(run, cmd["message_id"])
    assert row is not None and (row.status, row.attempts) == ("sent", 1)
    (mail,) = smtp.received
    assert mail["Subject"] == "For you"


async def test_a_replay_after_the_lead_was_erased_sends_nothing(
        database_url: str, kafka: KafkaSettings, smtp: SmtpSink, tmp_path: Path) -> None:
    cmd = needs_company(tmp_path, "lead-11")
    async with dispatch_service(database_url, kafka, smtp_port=smtp.port,
                                templates=str(tmp_path)) as run:
        await produce(kafka, [cmd])
        await dead_letters(run, 1)
        await publish_erasure(kafka, "lead-11")

        async def scrubbed() -> bool:
            row = await delivery(run, cmd["message_id"])
            return row is not None and row.lead_id.startswith("erased-")
        await wait_until(scrubbed, timeout=30, what="dispatch saw the erasure")
        (tmp_path / "strict" / "subject.txt").write_text("For you")  # a fix, too late for her
        assert await dlq.run(REPLAY_TEMPLATE_ERRORS, kafka) == 0
        await wait_until(lambda: metric(run, "nurture_dispatch_duplicate_commands_total"),
                         timeout=30, what="the replayed copy consumed")
        row = await delivery(run, cmd["message_id"])
    assert row is not None and row.status == "failed"
    assert smtp.received == []


async def test_an_unconfirmed_message_is_not_tried_again_by_a_replay(
        dispatch: Running, smtp: SmtpSink) -> None:
    """A message whose hand-off may have reached the provider could arrive twice: a replayed
    copy of its command (any dead letter of it) leaves it alone."""
    cmd = command("lead-8")
    async with dispatch.engine.begin() as conn:
        await repo.insert_deliveries(conn, rows=[repo.NewDelivery(
            cmd["message_id"], "lead-8", "email", orjson.dumps(cmd), dispatch.topics.dispatch,
            0, 0)], now=datetime.now(UTC))
        await repo.finish(conn, message_id=cmd["message_id"], status="failed",
                          now=datetime.now(UTC), error="sent_unconfirmed: interrupted")
    await produce(dispatch.kafka, [cmd], headers=[(REPLAYED_HEADER, b"0/7")])
    await wait_until(lambda: metric(dispatch, "nurture_dispatch_duplicate_commands_total"),
                     timeout=30, what="the replayed copy consumed")
    async with dispatch.engine.connect() as conn:
        row = await repo.get_delivery(conn, message_id=cmd["message_id"])
    assert row is not None and row.status == "failed"
    assert smtp.received == []


async def test_smtp_down_is_retried_then_dead_lettered(database_url: str,
                                                       kafka: KafkaSettings) -> None:
    cmd = command("lead-6")
    async with dispatch_service(database_url, kafka, smtp_port=free_port()) as run:
        await produce(kafka, [cmd])
        (letter,) = await dead_letters(run, 1)
        events = await outcomes(run, until=lambda es: len(of(es, cmd["message_id"])) >= 3)
        retries = await metric(run, 'nurture_dispatch_retries_total{channel="email"}')
        exhausted = await metric(run, 'nurture_dispatch_dead_letters_total{reason="exhausted"}')
        async with run.engine.connect() as conn:
            row = await repo.get_delivery(conn, message_id=cmd["message_id"])
    assert [(e["data"]["attempt"], e["data"]["retryable"]) for e in events] == [
        (1, True), (2, True), (3, False)]
    assert {e["data"]["reason"] for e in events} == {"connection_failed"}
    assert letter["error"].startswith("gave up after 3 attempts; last: connection_failed")
    assert (retries, exhausted) == (2, 1)
    assert row is not None and (row.status, row.attempts) == ("failed", 3)


async def test_expired_and_suppressed_messages_are_not_sent(dispatch: Running,
                                                             smtp: SmtpSink) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = command("lead-7", expires_at=past)
    unsubscribed = command("lead-8")
    async with dispatch.engine.begin() as conn:
        await repo.suppress(conn, lead_id="lead-8", channel="email", reason="unsubscribed",
                            at=datetime.now(UTC))
    await produce(dispatch.kafka, [expired, unsubscribed])
    events = await outcomes(dispatch, until=lambda es: len(es) >= 2)
    reasons = {e["data"]["message_id"]: (e["type"], e["data"]["reason"]) for e in events}
    assert reasons == {expired["message_id"]: ("message.suppressed", "expired"),
                       unsubscribed["message_id"]: ("message.suppressed", "unsubscribed")}
    async with dispatch.engine.connect() as conn:
        statuses = await repo.count_by_status(conn)
    assert statuses == {"expired": 1, "suppressed": 1}
    assert smtp.received == []


async def test_a_malformed_command_is_dead_lettered(dispatch: Running) -> None:
    await produce(dispatch.kafka, [b"not json", orjson.dumps({"message_id": "x"})])
    letters = await dead_letters(dispatch, 2)
    assert all(letter["error"].startswith("not a dispatch command") for letter in letters)
    assert await metric(dispatch, 'nurture_dispatch_dead_letters_total{reason="malformed"}') == 2


async def test_an_email_interrupted_after_the_hand_off_is_not_resent(
        dispatch: Running, smtp: SmtpSink) -> None:
    cmd = command("lead-9")
    stale = datetime.now(UTC) - timedelta(hours=1)
    async with dispatch.engine.begin() as conn:  # what a crash mid-attempt leaves behind
        await repo.insert_deliveries(conn, now=stale, rows=[repo.NewDelivery(
            cmd["message_id"], "lead-9", "email", orjson.dumps(cmd), "x", 0, 0)])
        await conn.execute(update(t.deliveries).where(
            t.deliveries.c.message_id == cmd["message_id"]).values(status="sending", attempts=1))
    events = await outcomes(dispatch, until=lambda es: of(es, cmd["message_id"]))
    (failed,) = events
    assert (failed["data"]["reason"], failed["data"]["retryable"]) == ("sent_unconfirmed", False)

    async def settled() -> bool:
        async with dispatch.engine.connect() as conn:
            row = await repo.get_delivery(conn, message_id=cmd["message_id"])
        return row is not None and row.status == "failed"
    await wait_until(settled, timeout=10, what="row settled")
    assert smtp.received == []


async def test_an_unsubscribe_on_the_events_topic_suppresses_the_next_email(
        dispatch: Running, smtp: SmtpSink) -> None:
    unsubscribed = {"specversion": "1.0", "id": "u1", "source": "nurture-ingest/tracking",
                    "type": "email.unsubscribed", "subject": "lead-10",
                    "time": datetime.now(UTC).isoformat(),
                    "data": {"message_id": "earlier", "method": "one_click"}}
    producer = AIOKafkaProducer(bootstrap_servers=dispatch.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(dispatch.topics.events, orjson.dumps(unsubscribed),
                                     key=b"lead-10", headers=[("ce_type",
                                                               b"email.unsubscribed")])
    finally:
        await producer.stop()

    async def suppressed() -> bool:
        async with dispatch.engine.connect() as conn:
            found = await repo.suppressions_for(conn, lead_ids=["lead-10"])
        return found == {"lead-10": {"email": "unsubscribed"}}
    await wait_until(suppressed, timeout=30, what="suppression recorded")

    cmd = command("lead-10")
    await produce(dispatch.kafka, [cmd])
    events = await outcomes(dispatch, until=lambda es: of(es, cmd["message_id"]))
    assert [(e["type"], e["data"]["reason"]) for e in of(events, cmd["message_id"])] == [
        ("message.suppressed", "unsubscribed")]
    assert smtp.received == []


async def test_a_burst_is_sent_concurrently_each_message_once(database_url: str,
                                                              kafka: KafkaSettings,
                                                              smtp: SmtpSink) -> None:
    async with dispatch_service(database_url, kafka, smtp_port=smtp.port, concurrency=8,
                                smtp_connections=3,
                                from_address="Acme <hi@acme.example>") as run:
        cmds = [command(f"lead-b{n % 7}") for n in range(40)]
        await produce(run.kafka, [*cmds, *cmds[:5]])  # five redelivered
        ids = {c["message_id"] for c in cmds}
        events = await outcomes(run, until=lambda es: ids <= {
            e["data"]["message_id"] for e in es if e["type"] == "message.sent"}, timeout=60)
        async with run.engine.connect() as conn:
            rows = [await repo.get_delivery(conn, message_id=i) for i in sorted(ids)]
    assert sorted(m["Message-ID"] for m in smtp.received) == sorted(
        f"<{i}@acme.example>" for i in ids)
    assert 1 <= smtp.connections <= 3
    sent = {e["data"]["message_id"]: e for e in events if e["type"] == "message.sent"}
    assert len(sent) == len(events) == 40
    for row in rows:
        assert row is not None
        assert (row.status, row.attempts, row.payload) == ("sent", 1, None)
        assert row.provider_id == f"<{row.message_id}@acme.example>"
        assert sent[row.message_id]["data"]["provider_message_id"] == row.provider_id
