"""The HTTP contract of ingest, with the real app and a FakePublisher (no broker needed)."""

from __future__ import annotations

import base64
import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from services.common.clock import ControllableClock
from services.common.config.settings import KafkaSettings
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings

KEY = "nk_unit"
SDK_KEY = "nk_sdk"
AUTH = {"Authorization": f"Bearer {KEY}"}
CE = {"Content-Type": "application/cloudevents+json"}


def event(**overrides: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e-1", "source": "https://www.example.com",
            "type": "web.page_viewed", "subject": "lead-1",
            "data": {"url": "https://www.example.com/"}} | overrides


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(
        api_keys=[
            ApiKeyConfig(name="web", sha256=hash_key(KEY), sources=["https://www.example.com*"]),
            ApiKeyConfig(name="sdk", sha256=hash_key(SDK_KEY), sources=["segment:*"]),
        ],
        max_batch_events=3, max_body_bytes=4096, retry_after_seconds=7)
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=publisher,
                               clock=ControllableClock(datetime(2026, 11, 24, tzinfo=UTC))))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as c:
        yield c


async def test_single_event_is_published_and_answered_202(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    r = await client.post("/v1/events", content=orjson.dumps(event()), headers=AUTH | CE)
    assert (r.status_code, r.json()) == (202, {"accepted": 1})
    assert [rec.key for rec in publisher.published] == [b"lead-1"]


async def test_invalid_batch_is_422_with_index_path_message_and_nothing_published(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    batch = [event(), event(id="e-2", data={})]
    r = await client.post("/v1/events", content=orjson.dumps(batch),
                          headers=AUTH | {"Content-Type": "application/cloudevents-batch+json"})
    assert r.status_code == 422
    assert {"index": 1, "path": "data.url", "message": r.json()["errors"][0]["message"]} \
        in r.json()["errors"]
    assert publisher.published == []


@pytest.mark.parametrize(("headers", "status", "says"), [
    ({}, 401, "missing API key"),
    ({"Authorization": "Bearer nope"}, 401, "unknown API key"),
])
async def test_auth_failures(client: httpx.AsyncClient, headers: dict[str, str], status: int,
                             says: str) -> None:
    r = await client.post("/v1/events", content=orjson.dumps(event()), headers=headers | CE)
    assert r.status_code == status and says in r.json()["detail"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_forbidden_source_is_403(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/events", content=orjson.dumps(event(source="urn:crm")),
                          headers=AUTH | CE)
    assert r.status_code == 403 and "urn:crm" in r.json()["detail"]


async def test_limits_413_and_415(client: httpx.AsyncClient) -> None:
    too_many = orjson.dumps([event(id=f"e{i}") for i in range(4)])
    many = await client.post("/v1/events", content=too_many,
                             headers=AUTH | {"Content-Type": "application/json"})
    assert many.status_code == 413
    too_big = orjson.dumps(event(data={"url": "https://www.example.com/" + "x" * 5000}))
    assert (await client.post("/v1/events", content=too_big, headers=AUTH | CE)).status_code == 413
    r = await client.post("/v1/events", content=b"x", headers=AUTH | {"Content-Type": "text/csv"})
    assert r.status_code == 415


async def test_gzip_bodies_are_accepted_and_gzip_bombs_refused(client: httpx.AsyncClient) -> None:
    gz = {"Content-Encoding": "gzip"}
    ok = await client.post("/v1/events", content=gzip.compress(orjson.dumps(event())),
                           headers=AUTH | CE | gz)
    assert ok.status_code == 202
    bomb = gzip.compress(b" " * 100_000 + orjson.dumps(event()))
    refused = await client.post("/v1/events", content=bomb, headers=AUTH | CE | gz)
    assert refused.status_code == 413


async def test_broker_unavailable_is_503_with_retry_after(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    publisher.available = False
    r = await client.post("/v1/events", content=orjson.dumps(event()), headers=AUTH | CE)
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert (await client.get("/readyz")).status_code == 503
    assert (await client.get("/healthz")).status_code == 200


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
            "Content-Type": "application/json"}


SEGMENT_DOC = {"batch": [{"type": "track", "event": "Demo Requested", "userId": "lead-3",
                          "messageId": "m1", "timestamp": "2026-11-20T10:00:00Z"}]}


async def test_segment_batch_with_basic_auth_answers_200(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    r = await client.post("/v1/batch", content=orjson.dumps(SEGMENT_DOC), headers=basic(SDK_KEY))
    assert (r.status_code, r.json()) == (200, {"success": True, "accepted": 1})
    (record,) = publisher.published
    assert orjson.loads(record.value)["source"] == "segment:sdk"


async def test_segment_source_must_be_allowed_for_the_key(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    r = await client.post("/v1/batch", content=orjson.dumps(SEGMENT_DOC), headers=basic(KEY))
    assert r.status_code == 403 and "segment:web" in r.json()["detail"]
    assert publisher.published == []


async def test_metrics_count_accepted_and_rejected(client: httpx.AsyncClient) -> None:
    await client.post("/v1/events", content=orjson.dumps(event()), headers=AUTH | CE)
    await client.post("/v1/events", content=orjson.dumps(event(data={})), headers=AUTH | CE)
    text = (await client.get("/metrics")).text
    assert 'nurture_ingest_events_accepted_total{type="web.page_viewed"} 1.0' in text
    assert 'nurture_ingest_events_rejected_total{reason="invalid"} 1.0' in text
    assert 'nurture_ingest_request_duration_seconds_count{route="/v1/events",status="202"} 1.0' \
        in text


async def test_openapi_documents_the_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/events", "/v1/batch", "/healthz", "/readyz"} <= set(spec["paths"])
    content = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert "application/cloudevents-batch+json" in content


async def test_segment_batch_accepts_the_good_calls_and_dead_letters_the_rest(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    bad_call = {"type": "identify", "userId": "lead-4", "messageId": "m2",
                "timestamp": "2026-11-20T10:00:00Z", "traits": {"email": "not-an-email"}}
    doc = {"batch": [SEGMENT_DOC["batch"][0], bad_call]}
    r = await client.post("/v1/batch", content=orjson.dumps(doc), headers=basic(SDK_KEY))
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert [(e["index"], e["path"]) for e in r.json()["rejected"]] == [(1, "traits.email")]
    event, letter = publisher.published
    assert (event.topic, orjson.loads(event.value)["id"]) == (None, "m1")
    assert letter.topic is not None and letter.topic.endswith("nurture.deadletter.v1")
    body = orjson.loads(letter.value)
    assert orjson.loads(base64.b64decode(body["value_b64"])) == bad_call
    assert body["origin"] == {"topic": "http:/v1/batch", "partition": 0, "offset": 1}
    assert "traits.email" in body["error"]
