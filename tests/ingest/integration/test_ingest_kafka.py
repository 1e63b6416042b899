"""ingest against the real broker: what a client posts is what lands on nurture.events.v1."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings import http as http_binding
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.v1.event import CloudEvent as SdkCloudEvent
from segment.analytics.client import Client as SegmentClient

from schemas.normalize import normalized
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings
from tests.support import isolated_kafka, read_topic, serve, wait_until

KEY = "nk_integration"
SDK_KEY = "nk_segment_sdk"
AUTH = {"Authorization": f"Bearer {KEY}"}


def event(**overrides: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "https://www.example.com",
            "type": "web.page_viewed", "subject": "lead-1",
            "data": {"url": "https://www.example.com/pricing"}} | overrides


def settings(**overrides: Any) -> IngestSettings:
    return IngestSettings(api_keys=[
        ApiKeyConfig(name="web", sha256=hash_key(KEY), sources=["https://www.example.com*"]),
        ApiKeyConfig(name="sdk", sha256=hash_key(SDK_KEY), sources=["segment:*", "urn:sdk*"]),
    ], **overrides)


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def ingest(kafka: KafkaSettings) -> AsyncIterator[str]:
    async with serve(create_app(bootstrap(settings(), kafka))) as url:
        async with httpx.AsyncClient() as client:
            async def ready() -> bool:
                return (await client.get(f"{url}/readyz")).status_code == 200
            await wait_until(ready, timeout=30, what="ingest ready")
        yield url


def by_id(records: list[Any]) -> dict[str, Any]:
    return {orjson.loads(r.value)["id"]: r for r in records}


async def test_batch_lands_keyed_by_lead_with_headers_and_payload(
        ingest: str, kafka: KafkaSettings) -> None:
    events = [event(subject=f"lead-{i % 3}") for i in range(10)]
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(events),
                              headers=AUTH | {"Content-Type": "application/cloudevents-batch+json"})
    assert (r.status_code, r.json()) == (202, {"accepted": 10})
    topic = Topics(kafka.topic_prefix).events
    records = await read_topic(kafka.bootstrap_servers, topic, until=lambda rs: len(rs) >= 10)
    got = by_id(records)
    assert set(got) == {e["id"] for e in events}
    for sent in events:
        rec = got[sent["id"]]
        assert rec.key == sent["subject"].encode()
        assert dict(rec.headers)["content-type"] == b"application/cloudevents+json; charset=utf-8"
        payload = orjson.loads(rec.value)
        # what was sent, plus what schemas/normalize.py derives from the url
        assert payload["data"] == normalized(sent)["data"] and payload["type"] == sent["type"]
        assert payload["time"].endswith("Z")  # defaulted to receipt time
    # one lead's events share a partition, in the order sent
    for lead in ("lead-0", "lead-1", "lead-2"):
        mine = [r for r in records if r.key == lead.encode()]
        assert len({r.partition for r in mine}) == 1
        assert [orjson.loads(r.value)["id"] for r in sorted(mine, key=lambda r: r.offset)] == \
            [e["id"] for e in events if e["subject"] == lead]


async def test_invalid_batch_and_bad_auth_publish_nothing(
        ingest: str, kafka: KafkaSettings) -> None:
    ctype = {"Content-Type": "application/json"}
    bad_batch = [event(), event(data={"title": "no url"})]
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(bad_batch),
                              headers=AUTH | ctype)
        assert r.status_code == 422
        assert [(e["index"], e["path"]) for e in r.json()["errors"]] == [(1, "data.url")]
        unauth = await client.post(f"{ingest}/v1/events", content=orjson.dumps(event()),
                                   headers={"Authorization": "Bearer wrong"} | ctype)
        assert unauth.status_code == 401
        forbidden = await client.post(f"{ingest}/v1/events", headers=AUTH | ctype,
                                      content=orjson.dumps(event(source="urn:other")))
        assert forbidden.status_code == 403
        sentinel = event(id="sentinel")
        ok = await client.post(f"{ingest}/v1/events", content=orjson.dumps(sentinel),
                               headers=AUTH | ctype)
        assert ok.status_code == 202
    topic = Topics(kafka.topic_prefix).events
    records = await read_topic(kafka.bootstrap_servers, topic,
                               until=lambda rs: "sentinel" in by_id(rs))
    assert list(by_id(records)) == ["sentinel"]


async def test_segment_sdk_and_cloudevents_sdk_reach_the_topic(
        ingest: str, kafka: KafkaSettings) -> None:
    segment = SegmentClient(write_key=SDK_KEY, host=ingest, sync_mode=True, max_retries=0)
    await asyncio.to_thread(segment.identify, "lead-sdk", {"email": "ada@example.com",
                                                           "firstName": "Ada"})
    await asyncio.to_thread(segment.track, "lead-sdk", "Webinar Registered", {"webinar_id": "w-1"})
    await asyncio.to_thread(segment.page, "lead-sdk", properties={"url": "https://x.io/pricing"})

    sent = {}  # the official CloudEvents SDK, in both HTTP content modes
    async with httpx.AsyncClient() as client:
        for mode, to_http in (("structured", http_binding.to_structured_event),
                              ("binary", http_binding.to_binary_event)):
            ce = SdkCloudEvent({"id": f"sdk-ce-{mode}", "source": "urn:sdk:test",
                                "type": "product.activity", "subject": "lead-sdk"},
                               {"action": "report_exported", "count": 2})
            message = to_http(ce)
            headers = dict(message.headers) | {"Authorization": f"Bearer {SDK_KEY}"}
            r = await client.post(f"{ingest}/v1/events", content=message.body, headers=headers)
            assert r.status_code == 202, (mode, r.text)
            sent[ce.get_id()] = ce

    topic = Topics(kafka.topic_prefix).events
    records = await read_topic(kafka.bootstrap_servers, topic, until=lambda rs: len(rs) >= 5)
    types = sorted(orjson.loads(r.value)["type"] for r in records)
    assert types == ["crm.lead_upserted", "product.activity", "product.activity",
                     "web.page_viewed", "web.webinar_registered"]
    for rec in records:  # and the SDK reads every record back, as the event that was sent
        back = kafka_binding.from_kafka_event(kafka_binding.KafkaMessage(
            headers=dict(rec.headers), key=rec.key, value=rec.value))
        assert back.get_subject() == "lead-sdk"
        if back.get_id() in sent:
            assert (back.get_type(), back.get_data()) == (
                "product.activity", sent[back.get_id()].get_data())
    assert set(sent) <= {orjson.loads(r.value)["id"] for r in records}
    assert {r.key for r in records} == {b"lead-sdk"}
    upserted = next(orjson.loads(r.value) for r in records
                    if orjson.loads(r.value)["type"] == "crm.lead_upserted")
    assert upserted["data"]["email"] == "ada@example.com"
    assert upserted["source"] == "segment:sdk"
    assert upserted["library"].startswith("analytics-python/")  # the SDK's context, kept


async def test_basic_auth_with_key_as_user_is_accepted(ingest: str) -> None:
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(event()),
                              headers={"Authorization": f"Basic {basic}",
                                       "Content-Type": "application/cloudevents+json"})
    assert r.status_code == 202
