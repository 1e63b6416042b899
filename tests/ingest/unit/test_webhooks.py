"""Inbound webhooks: the signed email-provider callback and the API-key CRM callback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr, ValidationError

from schemas import validate_event
from services.common.config.settings import KafkaSettings
from services.common.webhooks import secret_key, signed_headers
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings

RAW_KEY = b"provider-secret-0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
CRM_KEY, WEB_KEY = "nk_crm", "nk_web"
KEYS = [ApiKeyConfig(name="hubspot", sha256=hash_key(CRM_KEY), sources=["crm-webhook:*"],
                     types=["crm.*"]),
        ApiKeyConfig(name="website", sha256=hash_key(WEB_KEY), sources=["https://*"],
                     types=["web.*"])]
ITEMS: list[dict[str, Any]] = [
    {"type": "delivered", "message_id": "msg-1", "lead_id": "lead-1",
     "timestamp": "2025-03-14T09:26:53Z", "program_id": "p", "step_id": "s"},
    {"type": "bounced", "message_id": "msg-2", "lead_id": "lead-2",
     "timestamp": "2025-03-14T09:27:00Z", "bounce_type": "hard", "diagnostic": "550 " + "x" * 2000},
    {"type": "complained", "message_id": "msg-3", "lead_id": "lead-3",
     "timestamp": "2025-03-14T09:28:00+01:00"},
]


def sign(body: bytes, *, msg_id: str = "wh-1", at: float | None = None,
         key: bytes = RAW_KEY) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "Content-Type": "application/json"}


def app_client(publisher: FakePublisher, secret: str | None) -> httpx.AsyncClient:
    settings = IngestSettings(api_keys=KEYS,
                              email_webhook_secret=SecretStr(secret) if secret else None)
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=publisher))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest")


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(publisher, SECRET) as c:
        yield c


def published(publisher: FakePublisher) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in publisher.published]


async def test_signed_email_webhook_publishes_valid_events(client: httpx.AsyncClient,
                                                           publisher: FakePublisher) -> None:
    body = orjson.dumps(ITEMS)
    r = await client.post("/v1/webhooks/email", content=body, headers=sign(body))
    assert (r.status_code, r.json()) == (200, {"accepted": 3})
    events = published(publisher)
    assert [(e["type"], e["subject"], e["time"]) for e in events] == [
        ("email.delivered", "lead-1", "2025-03-14T09:26:53Z"),
        ("email.bounced", "lead-2", "2025-03-14T09:27:00Z"),
        ("email.complained", "lead-3", "2025-03-14T09:28:00+01:00")]
    assert all(validate_event(e) == [] for e in events)
    assert {e["source"] for e in events} == {"nurture-ingest/email-webhook"}
    assert events[0]["data"] == {"message_id": "msg-1", "program_id": "p", "step_id": "s"}
    assert events[1]["data"]["bounce_type"] == "hard"
    assert len(events[1]["data"]["diagnostic"]) == 1000
    assert len({e["id"] for e in events}) == 3
    assert [r.key for r in publisher.published] == [b"lead-1", b"lead-2", b"lead-3"]


async def test_a_provider_retry_is_the_same_events(client: httpx.AsyncClient,
                                                   publisher: FakePublisher) -> None:
    body = orjson.dumps(ITEMS[0])
    await client.post("/v1/webhooks/email", content=body, headers=sign(body, msg_id="wh-7"))
    await client.post("/v1/webhooks/email", content=body,
                      headers=sign(body, msg_id="wh-7", at=time.time() - 60))
    await client.post("/v1/webhooks/email", content=body, headers=sign(body, msg_id="wh-8"))
    first, retry, other = (e["id"] for e in published(publisher))
    assert first == retry != other


async def test_any_of_several_signatures_may_match(client: httpx.AsyncClient,
                                                   publisher: FakePublisher) -> None:
    body = orjson.dumps(ITEMS[0])
    headers = sign(body)
    stale = sign(body, key=b"the-old-rotated-secret-0123")["webhook-signature"]
    headers["webhook-signature"] = f"{stale} v1a,ignored {headers['webhook-signature']}"
    r = await client.post("/v1/webhooks/email", content=body, headers=headers)
    assert r.status_code == 200 and len(publisher.published) == 1


async def test_plain_text_secret_works_too(publisher: FakePublisher) -> None:
    body = orjson.dumps(ITEMS[0])
    async with app_client(publisher, "plain-text-secret-0123") as c:
        r = await c.post("/v1/webhooks/email", content=body,
                         headers=sign(body, key=b"plain-text-secret-0123"))
    assert r.status_code == 200


def tampered(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"lead-1", b"lead-9"), sign(body)


def wrong_secret(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, sign(body, key=b"not-the-provider-secret-0123")


def old(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, sign(body, at=time.time() - 301)


def unsigned(body: bytes) -> tuple[bytes, dict[str, str]]:
    return body, {"Content-Type": "application/json"}


@pytest.mark.parametrize(("forge", "says"), [
    (tampered, "does not match"), (wrong_secret, "does not match"),
    (old, "more than 5 minutes off"), (unsigned, "missing webhook-id"),
])
async def test_bad_signatures_are_401_and_publish_nothing(
        client: httpx.AsyncClient, publisher: FakePublisher, forge: Any, says: str) -> None:
    body, headers = forge(orjson.dumps(ITEMS[0]))
    r = await client.post("/v1/webhooks/email", content=body, headers=headers)
    assert r.status_code == 401 and says in r.json()["detail"]
    assert publisher.published == []


async def test_email_webhook_is_off_without_a_secret(publisher: FakePublisher) -> None:
    body = orjson.dumps(ITEMS[0])
    async with app_client(publisher, None) as c:
        r = await c.post("/v1/webhooks/email", content=body, headers=sign(body))
    assert r.status_code == 404
    assert "NURTURE_INGEST_EMAIL_WEBHOOK_SECRET" in r.json()["detail"]
    assert publisher.published == []


async def test_invalid_items_are_422_with_provider_paths(client: httpx.AsyncClient,
                                                         publisher: FakePublisher) -> None:
    items = [ITEMS[0], {**ITEMS[1], "bounce_type": "medium"}, {"type": "opened"},
             {**ITEMS[2], "lead_id": None, "message_id": ""}]
    body = orjson.dumps(items)
    r = await client.post("/v1/webhooks/email", content=body, headers=sign(body))
    assert r.status_code == 422
    where = {(e["index"], e["path"]) for e in r.json()["errors"]}
    assert {(1, "bounce_type"), (2, "type"), (3, "lead_id"), (3, "message_id")} <= where
    assert publisher.published == []


async def test_kafka_down_is_503_with_retry_after(client: httpx.AsyncClient,
                                                  publisher: FakePublisher) -> None:
    publisher.available = False
    body = orjson.dumps(ITEMS)
    r = await client.post("/v1/webhooks/email", content=body, headers=sign(body))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"


def test_a_malformed_whsec_secret_stops_start_up() -> None:
    with pytest.raises(ValidationError, match="not base64"):
        IngestSettings(api_keys=KEYS, email_webhook_secret=SecretStr("whsec_!!notbase64"))


CRM_BASE = {"lead_id": "lead-1", "id": "crm-evt-1", "timestamp": "2025-03-14T09:26:53Z"}


@pytest.mark.parametrize(("item", "etype", "data"), [
    ({"type": "opportunity_opened", "opportunity_id": "opp-1", "amount": 24000,
      "currency": "EUR", "stage": "Discovery", "owner_id": "usr-4", "internal": "dropped"},
     "crm.opportunity_opened", {"opportunity_id": "opp-1", "amount": 24000, "currency": "EUR",
                                "stage": "Discovery", "owner_id": "usr-4"}),
    ({"type": "deal_won", "opportunity_id": "opp-1", "amount": 21500.5, "currency": "EUR"},
     "crm.deal_won", {"opportunity_id": "opp-1", "amount": 21500.5, "currency": "EUR"}),
    ({"type": "deal_lost", "opportunity_id": "opp-1", "reason": "no_budget"},
     "crm.deal_lost", {"opportunity_id": "opp-1", "reason": "no_budget"}),
    ({"type": "task_completed", "task_id": "t-5", "outcome": "connected"},
     "crm.task_completed", {"task_id": "t-5", "outcome": "connected"}),
    ({"type": "owner_assigned", "owner_id": "usr-4"},
     "crm.owner_assigned", {"owner_id": "usr-4"}),
])
async def test_crm_webhook_mapping(client: httpx.AsyncClient, publisher: FakePublisher,
                                   item: dict[str, Any], etype: str,
                                   data: dict[str, Any]) -> None:
    r = await client.post("/v1/webhooks/crm", json={**CRM_BASE, **item},
                          headers={"Authorization": f"Bearer {CRM_KEY}"})
    assert (r.status_code, r.json()) == (200, {"accepted": 1})
    (event,) = published(publisher)
    assert (event["type"], event["id"], event["source"], event["subject"], event["time"]) == (
        etype, "crm-evt-1", "crm-webhook:hubspot", "lead-1", "2025-03-14T09:26:53Z")
    assert event["data"] == data
    assert validate_event(event) == []


@pytest.mark.parametrize(("authorization", "status"), [
    (None, 401), ("Bearer nk_unknown", 401), (f"Bearer {WEB_KEY}", 403),
])
async def test_crm_webhook_auth_failures(client: httpx.AsyncClient, publisher: FakePublisher,
                                         authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    r = await client.post("/v1/webhooks/crm", headers=headers,
                          json={**CRM_BASE, "type": "owner_assigned", "owner_id": "usr-4"})
    assert r.status_code == status
    assert publisher.published == []


async def test_crm_batch_is_all_or_nothing(client: httpx.AsyncClient,
                                           publisher: FakePublisher) -> None:
    items = [{**CRM_BASE, "type": "owner_assigned", "owner_id": "usr-4"},
             {**CRM_BASE, "type": "deal_won", "currency": "euro"},
             {**CRM_BASE, "type": "stage_changed"}]
    r = await client.post("/v1/webhooks/crm", json=items,
                          headers={"Authorization": f"Bearer {CRM_KEY}"})
    assert r.status_code == 422
    where = {(e["index"], e["path"]) for e in r.json()["errors"]}
    assert {(1, "opportunity_id"), (1, "currency"), (2, "type")} <= where
    assert publisher.published == []


async def test_webhook_routes_have_their_own_metrics_label(client: httpx.AsyncClient) -> None:
    await client.post("/v1/webhooks/crm", json={})
    text = (await client.get("/metrics")).text
    assert 'route="/v1/webhooks/crm",status="401"' in text


async def test_verifies_what_dispatch_signs(client: httpx.AsyncClient,
                                            publisher: FakePublisher) -> None:
    body = orjson.dumps(ITEMS[0])
    headers = signed_headers(secret_key(SECRET), msg_id="wh-d", now=datetime.now(UTC), body=body)
    r = await client.post("/v1/webhooks/email", content=body, headers=headers)
    assert r.status_code == 200 and len(publisher.published) == 1
