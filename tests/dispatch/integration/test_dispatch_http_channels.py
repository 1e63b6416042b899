"""SMS, CRM tasks and webhooks against a real HTTP peer on loopback: each reaches the peer with
the right authentication or signature; a 429 is retried with the same idempotency key; an
interrupted webhook is resent with the same webhook-id."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
from sqlalchemy import update

from schemas import validate_event
from services.common.config.settings import KafkaSettings
from services.common.webhooks import secret_key, signature
from services.dispatch.adapters import repository as repo
from services.dispatch.adapters import tables as t
from services.dispatch.adapters.crm import HttpTaskApi
from services.dispatch.adapters.sms import TwilioConfig, TwilioSms
from services.dispatch.adapters.webhook import HttpWebhookSender
from services.dispatch.domain.errors import HandoffRefused
from services.dispatch.domain.messages import Sms, Task, Webhook
from tests.dispatch.integration.dispatch_harness import (
    HttpPeer,
    Running,
    command,
    dispatch_service,
    of,
    outcomes,
    produce,
)
from tests.support import isolated_kafka, serve

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[HttpPeer, str]]:
    recorder = HttpPeer()
    async with serve(recorder.app()) as url:
        yield recorder, url


@pytest.fixture
async def dispatch(database_url: str, kafka: KafkaSettings,
                   peer: tuple[HttpPeer, str]) -> AsyncIterator[Running]:
    _, url = peer
    async with dispatch_service(
            database_url, kafka, sms_base_url=f"{url}/sms", sms_account_sid="AC123",
            sms_auth_token="sms-token", sms_from="+15550001111", crm_url=f"{url}/crm/tasks",
            crm_token="crm-token", webhook_url=f"{url}/hooks/nurture",
            webhook_secret=WEBHOOK_SECRET) as run:
        yield run


def verify_webhook(headers: dict[str, str], body: bytes) -> bool:
    expected = signature(secret_key(WEBHOOK_SECRET), msg_id=headers["webhook-id"],
                         timestamp=int(headers["webhook-timestamp"]), body=body)
    return expected in headers["webhook-signature"].split(" ")


async def test_sms_crm_task_and_webhook_reach_the_peer_authenticated(
        dispatch: Running, peer: tuple[HttpPeer, str]) -> None:
    recorder, _ = peer
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    sms = command("lead-1", channel="sms")
    task = command("lead-2", channel="crm_task", subject="Offer a call", due_at=due)
    hook = command("lead-3", channel="webhook")
    await produce(dispatch.kafka, [sms, task, hook])
    events = await outcomes(dispatch, until=lambda es: len(es) >= 3)
    assert {e["type"] for e in events} == {"message.sent"}, [e["data"] for e in events]
    assert all(validate_event(e) == [] for e in events)
    by_path = {s.path: s for s in recorder.seen}

    text = by_path["/sms/2010-04-01/Accounts/AC123/Messages.json"]
    assert text.headers["authorization"] == "Basic " + base64.b64encode(
        b"AC123:sms-token").decode()
    form = parse_qs(text.body.decode())
    assert (form["To"], form["From"]) == (["+14155550123"], ["+15550001111"])
    assert form["Body"][0].startswith("Nurture: Hi Ada, thanks for reading our email.")
    assert of(events, sms["message_id"])[0]["data"]["provider_message_id"].startswith("SM")

    crm = by_path["/crm/tasks"]
    assert crm.headers["authorization"] == "Bearer crm-token"
    assert crm.headers["idempotency-key"] == task["message_id"]
    body = json.loads(crm.body)
    assert (body["owner_id"], body["subject"], body["lead_id"]) == (
        "owner-7", "Offer a call", "lead-2")
    assert datetime.fromisoformat(body["due_at"]) == datetime.fromisoformat(due)
    assert "pricing-page +20" in body["body"]
    assert body["why_now"]["scores"]["b2b"]["total"] == 72.5

    webhook = by_path["/hooks/nurture"]
    assert webhook.headers["webhook-id"] == hook["message_id"]
    assert verify_webhook(webhook.headers, webhook.body)
    payload = json.loads(webhook.body)
    assert payload["type"] == "nurture.message"
    assert payload["data"]["lead_id"] == "lead-3"
    assert payload["data"]["text"].startswith("Hi Ada,")


async def test_a_rate_limited_webhook_is_retried_with_the_same_id(
        dispatch: Running, peer: tuple[HttpPeer, str]) -> None:
    recorder, _ = peer
    recorder.responses = [(429, {"Retry-After": "0"}), (503, {})]
    hook = command("lead-4", channel="webhook")
    await produce(dispatch.kafka, [hook])
    events = await outcomes(dispatch, until=lambda es: of(es, hook["message_id"],
                                                          "message.sent"))
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("message.failed", "http_429"), ("message.failed", "http_5xx"), ("message.sent", None)]
    assert [s.headers["webhook-id"] for s in recorder.seen] == [hook["message_id"]] * 3
    assert all(verify_webhook(s.headers, s.body) for s in recorder.seen)


async def test_a_rejected_crm_task_fails_at_once(dispatch: Running,
                                                 peer: tuple[HttpPeer, str]) -> None:
    recorder, _ = peer
    recorder.responses = [(422, {})]
    task = command("lead-5", channel="crm_task", subject="Call")
    await produce(dispatch.kafka, [task])
    events = await outcomes(dispatch, until=lambda es: of(es, task["message_id"]))
    assert [(e["type"], e["data"]["reason"], e["data"]["retryable"]) for e in events] == [
        ("message.failed", "http_4xx", False)]
    assert len(recorder.seen) == 1


async def test_an_interrupted_webhook_is_resent_with_its_idempotency_key(
        dispatch: Running, peer: tuple[HttpPeer, str]) -> None:
    recorder, _ = peer
    hook = command("lead-6", channel="webhook")
    stale = datetime.now(UTC) - timedelta(hours=1)
    async with dispatch.engine.begin() as conn:
        await repo.insert_deliveries(conn, now=stale, rows=[repo.NewDelivery(
            hook["message_id"], "lead-6", "webhook", orjson.dumps(hook), "x", 0, 0)])
        await conn.execute(update(t.deliveries).where(
            t.deliveries.c.message_id == hook["message_id"]).values(status="sending",
                                                                     attempts=1))
    events = await outcomes(dispatch, until=lambda es: of(es, hook["message_id"],
                                                          "message.sent"))
    assert of(events, hook["message_id"])[0]["data"]["attempt"] == 2
    assert [s.headers["webhook-id"] for s in recorder.seen] == [hook["message_id"]]


async def test_a_channel_without_configuration_fails_with_the_reason(
        database_url: str, kafka: KafkaSettings) -> None:
    sms = command("lead-7", channel="sms")
    async with dispatch_service(database_url, kafka) as run:
        await produce(kafka, [sms])
        events = await outcomes(run, until=lambda es: of(es, sms["message_id"]))
    assert [(e["type"], e["data"]["reason"]) for e in events] == [
        ("message.failed", "channel_not_configured")]


class RawHttpPeer:
    """An HTTP/1.1 server on a plain socket that counts the bytes of the request it is
    receiving (0 between requests) and answers each with 201."""

    def __init__(self) -> None:
        self.receiving = 0
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawHttpPeer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.receiving += len(head)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                self.receiving, self.requests = 0, self.requests + 1
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")
                await writer.drain()
        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


async def test_the_http_channels_reach_the_hand_off_before_the_request_goes_out() -> None:
    seen: list[tuple[int, int]] = []
    async with RawHttpPeer() as peer, httpx.AsyncClient() as client:
        async def handoff() -> None:  # the peer has no byte of this request yet
            seen.append((peer.requests, peer.receiving))

        async def refuse() -> None:
            raise HandoffRefused("m1")

        sends = [
            lambda h: TwilioSms(client, TwilioConfig(f"{peer.url}/sms", "AC1", "t", "+1555"))
            .send(Sms("m1", "+14155550123", "Hi"), handoff=h),
            lambda h: HttpTaskApi(client, url=f"{peer.url}/crm", token=None).create(
                Task("m1", {"title": "Call"}), handoff=h),
            lambda h: HttpWebhookSender(client, url=f"{peer.url}/hooks",
                                        secret=WEBHOOK_SECRET).send(
                Webhook("m1", {"type": "x"}), now=datetime.now(UTC), handoff=h)]
        for send in sends:
            with pytest.raises(HandoffRefused):
                await send(refuse)
        assert (peer.requests, peer.receiving) == (0, 0)  # refused: nothing went out
        for send in sends:
            await send(handoff)
        assert peer.requests == 3
    assert seen == [(0, 0), (1, 0), (2, 0)]  # each request went out after its hand-off
