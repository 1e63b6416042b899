"""What a web page's analytics.js meets at ingest (the real app, a FakePublisher): its call
endpoints with the write key in the body or as Basic, the settings document, and CORS per key."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from schemas.records import DeadLetter
from services.common.clock import ControllableClock
from services.common.config.settings import KafkaSettings
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings

SITE = "https://www.example.com"
BROWSER_KEY = "nk_browser"
SERVER_KEY = "nk_server"
TEXT = {"Content-Type": "text/plain"}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def app_with(publisher: FakePublisher, **settings: Any) -> Any:
    keys = [ApiKeyConfig(name="site", sha256=hash_key(BROWSER_KEY), sources=["segment:*"],
                         origins=[SITE, "https://*.example.org"]),
            ApiKeyConfig(name="server", sha256=hash_key(SERVER_KEY), sources=["*"])]
    return create_app(bootstrap(IngestSettings(api_keys=keys, **settings), KafkaSettings(),
                                publisher=publisher,
                                clock=ControllableClock(datetime(2026, 11, 24, tzinfo=UTC))))


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with(publisher)),
                                 base_url="http://ingest.test") as c:
        yield c


def page_call(**more: Any) -> dict[str, Any]:
    return {"type": "page", "anonymousId": "anon-1", "messageId": "m-1",
            "timestamp": "2026-11-23T10:00:00Z", "writeKey": BROWSER_KEY,
            "properties": {"url": f"{SITE}/pricing"},
            "context": {"userAgent": "Mozilla/5.0", "ip": "198.51.100.7"}} | more


def published(publisher: FakePublisher) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in publisher.published if r.topic is None]


async def test_a_page_call_with_the_write_key_in_the_body_is_published(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    r = await client.post("/v1/p", content=orjson.dumps(page_call()),
                          headers=TEXT | {"Origin": SITE})
    assert r.status_code == 200 and r.json()["success"] is True
    assert r.headers["access-control-allow-origin"] == SITE
    (event,) = published(publisher)
    assert (event["type"], event["subject"], event["id"]) == ("web.page_viewed", "anon-1", "m-1")
    assert event["data"]["path"] == "/pricing" and event["clientip"] == "198.51.100.0"
    assert "writeKey" not in orjson.dumps(event).decode()


async def test_rudderstack_posts_each_call_to_its_whole_name_as_json_with_basic_auth(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"{BROWSER_KEY}:".encode()).decode()}
    call = {k: v for k, v in page_call().items() if k not in ("writeKey", "type")}
    r = await client.post("/v1/page", content=orjson.dumps(call), headers=basic | {
        "Content-Type": "application/json;charset=UTF-8", "Origin": SITE})
    assert r.status_code == 200, r.text
    (event,) = published(publisher)
    assert (event["type"], event["subject"]) == ("web.page_viewed", "anon-1")


async def test_basic_auth_identify_and_a_batch_are_published(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"{BROWSER_KEY}:".encode()).decode()}
    identify = {"type": "identify", "userId": "ada@example.com", "anonymousId": "anon-1",
                "messageId": "m-2", "traits": {"email": "ada@example.com"}}
    r = await client.post("/v1/i", content=orjson.dumps(identify),
                          headers=TEXT | basic | {"Origin": "https://docs.example.org"})
    assert r.status_code == 200, r.text
    batch = {"writeKey": BROWSER_KEY, "batch": [page_call(messageId="m-3"),
                                                page_call(messageId="m-4", type="track",
                                                          event="Pricing Viewed")]}
    r = await client.post("/v1/b", content=orjson.dumps(batch), headers=TEXT)
    assert r.status_code == 200 and r.json()["accepted"] == 1  # the track: product.activity
    assert r.json()["rejected"][0]["index"] == 1
    events = published(publisher)
    assert [e["type"] for e in events] == [
        "crm.lead_upserted", "identity.linked", "web.page_viewed"]
    assert (events[1]["subject"], events[1]["data"]) == (
        "anon-1", {"lead_id": "ada@example.com", "via": "identify"})


@pytest.mark.parametrize(("key", "origin", "status", "says"), [
    (BROWSER_KEY, "https://evil.example.net", 403, "origin 'https://evil.example.net'"),
    (SERVER_KEY, SITE, 403, "may not be used from a browser"),
    (None, SITE, 401, "missing write key"),
    ("nk_nope", SITE, 401, "unknown API key"),
])
async def test_pages_a_key_does_not_allow_are_refused_with_the_reason(
        client: httpx.AsyncClient, publisher: FakePublisher, key: str | None, origin: str,
        status: int, says: str) -> None:
    r = await client.post("/v1/p", content=orjson.dumps(page_call(writeKey=key)),
                          headers=TEXT | {"Origin": origin})
    assert r.status_code == status and says in r.json()["detail"]
    assert "access-control-allow-origin" not in r.headers
    assert publisher.published == []


async def test_a_browser_key_may_not_send_other_crm_events(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    event = {"specversion": "1.0", "id": "d-1", "source": "segment:site", "type": "crm.deal_won",
             "subject": "lead-1", "data": {"opportunity_id": "o-1"}}
    r = await client.post("/v1/events", content=orjson.dumps(event), headers={
        "Authorization": f"Bearer {BROWSER_KEY}", "Content-Type": "application/json",
        "Origin": SITE})
    assert r.status_code == 403 and "'crm.deal_won'" in r.json()["detail"]
    assert r.headers["access-control-allow-origin"] == SITE  # the page can read why
    assert publisher.published == []


async def test_a_malformed_call_in_a_browser_batch_is_listed_and_dead_lettered(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    batch = {"writeKey": BROWSER_KEY, "batch": [page_call(), {"type": "page"}]}
    r = await client.post("/v1/b", content=orjson.dumps(batch), headers=TEXT)
    assert r.status_code == 200
    assert [p["index"] for p in r.json()["rejected"]] == [1]
    (letter,) = [DeadLetter.from_bytes(rec.value) for rec in publisher.published
                 if rec.topic is not None]
    assert orjson.loads(letter.value or b"") == {"type": "page"}  # the call as sent, no key


@pytest.mark.parametrize(("origin", "headers", "allowed"), [
    (SITE, "content-type, authorization", True),
    (SITE, "anonymousid,authorization,content-type,sentat", True),  # RudderStack's
    ("https://a.example.org", "x-retry-count", True),
    ("https://evil.example.net", "content-type", False),
    (SITE, "x-something-else", False),
])
async def test_preflights_are_answered_for_origins_some_key_allows(
        client: httpx.AsyncClient, origin: str, headers: str, allowed: bool) -> None:
    for path in ("/v1/t", "/v1/batch", "/v1/events"):
        r = await client.options(path, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers})
        assert r.status_code == (204 if allowed else 403)
        assert (r.headers.get("access-control-allow-origin") == origin) is allowed
        if allowed:
            assert "authorization" in r.headers["access-control-allow-headers"]


async def test_the_settings_document_sends_every_call_to_this_ingest(
        client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v1/projects/{BROWSER_KEY}/settings", headers={"Origin": SITE})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == SITE
    assert r.headers["vary"] == "Origin"
    segment = r.json()["integrations"]["Segment.io"]
    assert segment == {"apiKey": BROWSER_KEY, "apiHost": "ingest.test/v1", "protocol": "http"}
    for unknown in ("nk_nope", SERVER_KEY):  # a server key is no browser key
        assert (await client.get(f"/v1/projects/{unknown}/settings")).status_code == 404
    other = await client.get(f"/v1/projects/{BROWSER_KEY}/settings",
                             headers={"Origin": "https://evil.example.net"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


async def test_a_server_key_from_a_page_of_the_same_host_but_another_scheme_is_refused(
        client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    event = {"specversion": "1.0", "id": "s-1", "source": "https://www.example.com",
             "type": "web.page_viewed", "subject": "lead-1",
             "data": {"url": "https://www.example.com/"}}
    headers = {"Authorization": f"Bearer {SERVER_KEY}", "Content-Type": "application/json"}
    same = await client.post("/v1/events", content=orjson.dumps(event),
                             headers=headers | {"Origin": "http://ingest.test"})
    assert same.status_code == 202  # this server's own page (/docs)
    other = await client.post("/v1/events", content=orjson.dumps(event | {"id": "s-2"}),
                              headers=headers | {"Origin": "https://ingest.test"})
    assert other.status_code == 403 and len(publisher.published) == 1


async def test_one_client_address_has_its_own_rate_limit_with_a_browser_key(
        publisher: FakePublisher) -> None:
    app = app_with(publisher, client_rate_limit_per_second=0.001, client_rate_limit_burst=1)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as c:
        first = await c.post("/v1/p", content=orjson.dumps(page_call()), headers=TEXT)
        second = await c.post("/v1/p", content=orjson.dumps(page_call(messageId="m-9")),
                              headers=TEXT)
    assert first.status_code == 200
    assert second.status_code == 429 and "one client address" in second.json()["detail"]


async def test_a_call_without_an_address_gets_the_request_s_as_segment_does(
        publisher: FakePublisher) -> None:
    transport = httpx.ASGITransport(app=app_with(publisher), client=("203.0.113.9", 5000))
    call = page_call()
    del call["context"]
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as c:
        r = await c.post("/v1/p", content=orjson.dumps(call), headers=TEXT)
    assert r.status_code == 200
    assert published(publisher)[0]["clientip"] == "203.0.113.0"
