"""Every route of every HTTP service has an authentication decision, and each is enforced.

The tables below list each (method, path) of ingest, the orchestrator and dispatch with how it
is authenticated. A route added without a decision fails `test_every_route_has_a_decision`;
every protected route is then called with no, wrong and right credentials (the apps built with
every optional endpoint on), and the admin / webhook endpoints once more with them turned off.
Ingest runs in-process with a fake publisher; the orchestrator under uvicorn on the real
PostgreSQL (no Kafka needed: its workers are off)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Route

from services.common.clock import ControllableClock
from services.common.config.settings import KafkaSettings
from services.common.tracking import TrackingClaims, TrackingSettings, sign
from services.dispatch.bootstrap import bootstrap as bootstrap_dispatch
from services.dispatch.entrypoints.http.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.adapters import twilio
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tests.support import serve

PUBLIC, API_KEY, SIGNED, TOKEN_LINK, API_TOKEN, ADMIN, ENROLLING, WRITE_KEY, KEY_IN_PATH = (
    "public", "api key", "signature", "signed link", "api token", "admin token",
    "enrollment token", "write key in the body or Basic, and the page's origin",
    "a browser key in the path")
DOCS = {("GET", "/openapi.json"): PUBLIC, ("GET", "/docs"): PUBLIC,
        ("GET", "/docs/oauth2-redirect"): PUBLIC, ("GET", "/redoc"): PUBLIC}
PROBES = {("GET", "/healthz"): PUBLIC, ("GET", "/readyz"): PUBLIC, ("GET", "/metrics"): PUBLIC}
INGEST = DOCS | PROBES | {
    ("POST", "/v1/events"): API_KEY, ("POST", "/v1/batch"): API_KEY,
    ("POST", "/v1/webhooks/crm"): API_KEY, ("POST", "/v1/webhooks/email"): SIGNED,
    ("GET", "/t/open/{token}"): TOKEN_LINK, ("GET", "/t/click/{token}"): TOKEN_LINK,
    ("GET", "/t/unsubscribe/{token}"): TOKEN_LINK, ("POST", "/t/unsubscribe/{token}"): TOKEN_LINK,
    **{("POST", f"/v1/{kind}"): WRITE_KEY for kind in [*"tpigasb", "track", "page", "identify",
                                                       "group", "alias", "screen"]},
    ("GET", "/v1/projects/{write_key}/settings"): KEY_IN_PATH}
ORCHESTRATOR = DOCS | PROBES | {
    ("POST", "/v1/leads/{lead_id}/enrollments"): ENROLLING,
    ("GET", "/v1/leads/{lead_id}"): API_TOKEN, ("GET", "/v1/leads"): API_TOKEN,
    ("DELETE", "/v1/leads/{lead_id}/enrollments/{program}"): ENROLLING,
    ("DELETE", "/v1/leads/{lead_id}"): API_TOKEN,
    ("GET", "/v1/programs"): API_TOKEN, ("GET", "/v1/funnel"): API_TOKEN,
    ("POST", "/v1/admin/clock/advance"): ADMIN, ("POST", "/v1/webhooks/sms"): SIGNED,
    ("GET", "/v1/admin/clock"): ADMIN, ("POST", "/v1/admin/clock/reset"): ADMIN}
DISPATCH = DOCS | PROBES

KEY, TRACKING_SECRET = f"nk_{uuid.uuid4().hex}", "route-auth-tracking-secret-0123"
EMAIL_SECRET, SMS_TOKEN = "route-auth-email-webhook-secret", "route-auth-sms-token"
API, ADMIN_T, PUBLIC_URL = "api-token-route-auth", "admin-token-route-auth", "https://o.example"
ENROLL_T = "enrollment-token-route-auth"
NOW = datetime.now(UTC).replace(microsecond=0)
BEARER = {"Authorization": f"Bearer {KEY}"}


def routes(app: FastAPI) -> set[tuple[str, str]]:
    found = set()
    # routers included with include_router are tree nodes since FastAPI 0.137: flattened here
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute | Route) and route.methods:
            found |= {(m, str(route.path)) for m in route.methods if m != "HEAD"}
    return found


def ingest_app(publisher: FakePublisher, *, optional: bool = True) -> FastAPI:
    settings = IngestSettings(api_keys=[ApiKeyConfig(name="site", sha256=hash_key(KEY))],
                              email_webhook_secret=EMAIL_SECRET if optional else None)
    return create_ingest(bootstrap_ingest(
        settings, KafkaSettings(), publisher=publisher, clock=ControllableClock(NOW),
        tracking_keys=[TRACKING_SECRET.encode()] if optional else None))


def orchestrator_settings(database_url: str, schema: str,
                          optional: bool = True) -> OrchestratorSettings:
    extra: dict[str, Any] = {"admin_token": ADMIN_T, "enrollment_token": ENROLL_T,
                             "sms_auth_token": SMS_TOKEN,
                             "public_url": PUBLIC_URL} if optional else {}
    return OrchestratorSettings(DATABASE_URL=database_url,
                                db_schema=schema, api_token=API, **extra)


DECIDER = Decider([Program(id="manual", version=1, name="Manual", trigger=Trigger("manual"),
                           steps=(Step("wait", "wait", seconds=86400),))],
                  ContactPolicy(caps=(), quiet_hours=None))


def test_every_route_has_a_decision(database_url: str) -> None:
    settings = orchestrator_settings(database_url, "unused")
    dispatch = DispatchSettings(DATABASE_URL=database_url)
    apps = {"ingest": (ingest_app(FakePublisher()), INGEST),
            "orchestrator": (create_orchestrator(bootstrap(settings, KafkaSettings(), DECIDER,
                                                 run_workers=False)), ORCHESTRATOR),
            "dispatch": (create_dispatch(bootstrap_dispatch(dispatch, KafkaSettings(),
                                                            TrackingSettings())),
                         DISPATCH)}
    for name, (app, table) in apps.items():
        assert routes(app) == set(table), f"{name}: routes without a decision, or gone"


@dataclass
class Call:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def token(kind: Any, url: str | None = None, key: str = TRACKING_SECRET) -> str:
    return sign(TrackingClaims("msg-1", "lead-1", "p", "s", kind, int(time.time()) + 3600, url),
                key=key.encode())


def email_headers(body: bytes, secret: str = EMAIL_SECRET, at: float | None = None) -> dict[
        str, str]:
    stamp = str(int(at if at is not None else NOW.timestamp()))
    mac = hmac.new(secret.encode(), f"wh-1.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": "wh-1", "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{base64.b64encode(mac).decode()}"}


EVENT = orjson.dumps({"specversion": "1.0", "id": "e1", "source": "s", "type": "web.page_viewed",
                      "subject": "lead-1", "data": {"url": "https://x.io/"}})
BATCH = orjson.dumps({"batch": [{"type": "track", "event": "Demo Requested", "userId": "lead-1",
                                 "messageId": "m1"}]})
CRM = orjson.dumps({"type": "deal_won", "lead_id": "lead-1", "id": "c1",
                    "timestamp": NOW.isoformat(), "opportunity_id": "opp-1"})
EMAIL = orjson.dumps({"type": "delivered", "message_id": "msg-1", "lead_id": "lead-1",
                      "timestamp": NOW.isoformat()})
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("key", [None, "Bearer nk_wrong", "Basic bms6", "Bearer"])
@pytest.mark.parametrize("call", [Call("POST", "/v1/events", EVENT, JSON),
                                  Call("POST", "/v1/batch", BATCH, JSON),
                                  Call("POST", "/v1/webhooks/crm", CRM, JSON)],
                         ids=lambda c: c.path)
async def test_ingest_api_key_routes_refuse_without_the_key(call: Call, key: str | None) -> None:
    publisher = FakePublisher()
    headers = call.headers | ({"Authorization": key} if key else {})
    async with client_for(ingest_app(publisher)) as client:
        r = await client.request(call.method, call.path, content=call.body, headers=headers)
    assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
    assert publisher.published == []


PAGE_CALL = {"type": "track", "event": "Demo Requested", "userId": "lead-1", "messageId": "m1"}


@pytest.mark.parametrize("write_key", [None, "nk_wrong", ""])
async def test_browser_routes_refuse_without_the_write_key(write_key: str | None) -> None:
    publisher = FakePublisher()
    body = orjson.dumps(PAGE_CALL | ({"writeKey": write_key} if write_key is not None else {}))
    async with client_for(ingest_app(publisher)) as client:
        r = await client.post("/v1/t", content=body, headers={"Content-Type": "text/plain"})
        settings = await client.get(f"/v1/projects/{write_key or 'none'}/settings")
    assert r.status_code == 401 and settings.status_code == 404
    assert publisher.published == []


async def test_browser_routes_take_the_write_key_from_the_body() -> None:
    publisher = FakePublisher()
    async with client_for(ingest_app(publisher)) as client:
        r = await client.post("/v1/t", content=orjson.dumps(PAGE_CALL | {"writeKey": KEY}),
                              headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert len(publisher.published) == 1


@pytest.mark.parametrize(("call", "status"), [
    (Call("POST", "/v1/events", EVENT, JSON | BEARER), 202),
    (Call("POST", "/v1/batch", BATCH, JSON | BEARER), 200),
    (Call("POST", "/v1/webhooks/crm", CRM, JSON | BEARER), 200),
    (Call("POST", "/v1/webhooks/email", EMAIL, JSON | email_headers(EMAIL)), 200),
    (Call("GET", f"/t/open/{token('open')}"), 200),
    (Call("GET", f"/t/click/{token('click', 'https://x.io/a')}"), 302),
    (Call("POST", f"/t/unsubscribe/{token('unsubscribe')}"), 200),
], ids=lambda c: c.path.split("/")[2] if isinstance(c, Call) else str(c))
async def test_ingest_right_credentials_are_accepted(call: Call, status: int) -> None:
    publisher = FakePublisher()
    async with client_for(ingest_app(publisher)) as client:
        r = await client.request(call.method, call.path, content=call.body, headers=call.headers)
    assert r.status_code == status, r.text
    assert len(publisher.published) == 1


@pytest.mark.parametrize("headers", [
    {}, email_headers(EMAIL, secret="some-other-secret-of-16-bytes"),
    email_headers(EMAIL, at=NOW.timestamp() - 301), email_headers(EMAIL, at=NOW.timestamp() + 301),
    email_headers(b"[]"),  # signed, but another body
], ids=["unsigned", "wrong-secret", "stale", "future", "other-body"])
async def test_email_webhook_needs_a_fresh_signature_of_this_body(headers: dict[str, str]) -> None:
    publisher = FakePublisher()
    async with client_for(ingest_app(publisher)) as client:
        r = await client.post("/v1/webhooks/email", content=EMAIL, headers=JSON | headers)
    assert r.status_code == 401 and publisher.published == []


@pytest.mark.parametrize("path", [
    f"/t/click/{token('click', 'https://x.io/a', key='another-secret-0123456789')}",
    f"/t/click/{token('open')}",  # a pixel token is no redirect
    f"/t/click/{token('click', 'https://x.io/a')[:-2]}xx",
    "/t/click/not-a-token", f"/t/unsubscribe/{token('click', 'https://x.io/a')}"])
async def test_tracking_links_refuse_forged_or_foreign_tokens(path: str) -> None:
    publisher = FakePublisher()
    async with client_for(ingest_app(publisher)) as client:
        r = await client.get(path)
        posted = await client.post(path) if "/unsubscribe/" in path else r
    assert (r.status_code, posted.status_code) == (404, 404)
    assert "location" not in r.headers
    assert publisher.published == []


@pytest.mark.parametrize("tok", [
    token("open", key="another-secret-0123456789"), token("click", "https://x.io/a"),
    token("open")[:-2] + "xx", "not-a-token"])
async def test_open_pixel_records_nothing_for_a_bad_token(tok: str) -> None:
    publisher = FakePublisher()
    async with client_for(ingest_app(publisher)) as client:
        r = await client.get(f"/t/open/{tok}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"  # mail clients
    assert publisher.published == []


async def test_ingest_optional_endpoints_are_off_without_their_secrets() -> None:
    async with client_for(ingest_app(FakePublisher(), optional=False)) as client:
        r = await client.post("/v1/webhooks/email", content=EMAIL,
                              headers=JSON | email_headers(EMAIL))
        assert r.status_code == 404
        assert (await client.get(f"/t/open/{token('open')}")).status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs", "/metrics"])
async def test_ingest_public_routes_need_nothing(path: str) -> None:
    async with client_for(ingest_app(FakePublisher())) as client:
        assert (await client.get(path)).status_code == 200


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


@pytest.fixture
async def orch_schema(database_url: str) -> str:
    schema = f"ra_{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    return schema


@pytest.fixture
async def orchestrator(database_url: str, orch_schema: str) -> AsyncIterator[str]:
    app = create_orchestrator(bootstrap(orchestrator_settings(database_url, orch_schema),
                                        KafkaSettings(), DECIDER, run_workers=False))
    async with serve(app) as url:
        yield url


ENROLL = Call("POST", "/v1/leads/lead-1/enrollments", b'{"program": "manual"}', JSON)
ORCH_CALLS = [  # in this order, each with right credentials (the token) succeeds
    (ENROLL, 201, ENROLL_T), (Call("GET", "/v1/leads/lead-1"), 200, API),
    (Call("DELETE", "/v1/leads/lead-1/enrollments/manual"), 200, ENROLL_T),
    (Call("GET", "/v1/programs"), 200, API), (Call("GET", "/v1/funnel"), 200, API),
    (Call("DELETE", "/v1/leads/lead-1"), 202, API)]
WRONG = [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {ADMIN_T}"},
         *({"Authorization": f"{scheme}{secret}"} for secret in (API, ENROLL_T)
           for scheme in ("", "Basic "))]


async def test_orchestrator_api_token_admin_token_and_sms_signature(orchestrator: str) -> None:
    async with httpx.AsyncClient(base_url=orchestrator) as client:
        for call, status, right in ORCH_CALLS:
            others = [{"Authorization": f"Bearer {t}"} for t in (API, ENROLL_T) if t != right]
            for wrong in WRONG + others:  # the API token does not change enrollments
                r = await client.request(call.method, call.path, content=call.body,
                                         headers=call.headers | wrong)
                assert r.status_code == 401, (call.path, wrong)
            r = await client.request(call.method, call.path, content=call.body,
                                     headers=call.headers | {"Authorization": f"Bearer {right}"})
            assert r.status_code == status, (call.path, r.text)

        clock = b'{"seconds": 60}'
        for wrong in [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {API}"}]:
            r = await client.post("/v1/admin/clock/advance", content=clock, headers=JSON | wrong)
            assert r.status_code == 401
        r = await client.post("/v1/admin/clock/advance", content=clock,
                              headers=JSON | {"Authorization": f"Bearer {ADMIN_T}"})
        assert r.status_code == 200

        form = {"From": "+14155550100", "Body": "HELP", "MessageSid": "SM1"}
        good = twilio.signature(SMS_TOKEN, f"{PUBLIC_URL}/v1/webhooks/sms", form)
        form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for sig in [None, "bm9wZQ==", twilio.signature("other", PUBLIC_URL, form)]:
            r = await client.post("/v1/webhooks/sms", content=urlencode(form), headers=(
                form_headers | ({"X-Twilio-Signature": sig} if sig else {})))
            assert r.status_code == 401
        r = await client.post("/v1/webhooks/sms", content=urlencode(form),
                              headers=form_headers | {"X-Twilio-Signature": good})
        assert r.status_code == 200 and "<Message>" in r.text
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert (await client.get(path)).status_code == 200


async def test_orchestrator_admin_enrollment_and_sms_endpoints_are_off_unless_configured(
        database_url: str, orch_schema: str) -> None:
    app = create_orchestrator(bootstrap(
        orchestrator_settings(database_url, orch_schema, optional=False), KafkaSettings(),
        DECIDER, run_workers=False))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for auth in [API, ADMIN_T, ENROLL_T]:
            r = await client.post("/v1/admin/clock/advance", content=b'{"seconds": 60}',
                                  headers=JSON | {"Authorization": f"Bearer {auth}"})
            assert r.status_code == 404
            r = await client.request(ENROLL.method, ENROLL.path, content=ENROLL.body,
                                     headers=ENROLL.headers | {"Authorization": f"Bearer {auth}"})
            assert r.status_code == 404
            r = await client.delete("/v1/leads/lead-1/enrollments/manual",
                                    headers={"Authorization": f"Bearer {auth}"})
            assert r.status_code == 404
        assert (await client.post("/v1/webhooks/sms", content=b"Body=STOP")).status_code == 404


async def test_orchestrator_without_an_api_token_refuses_everything(
        database_url: str, orch_schema: str) -> None:
    settings = orchestrator_settings(database_url, orch_schema)
    settings.api_token = None
    app = create_orchestrator(bootstrap(settings, KafkaSettings(), DECIDER, run_workers=False))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for call, _, _ in ORCH_CALLS:
            r = await client.request(call.method, call.path, content=call.body,
                                     headers=call.headers | {"Authorization": "Bearer x"})
            assert r.status_code == 401


async def test_public_endpoints_refuse_big_bodies_without_buffering_them(
        database_url: str, orch_schema: str) -> None:
    publisher = FakePublisher()
    big = b"x" * (256 * 1024)
    async with client_for(ingest_app(publisher)) as client:
        r = await client.post(f"/t/unsubscribe/{token('unsubscribe')}", content=big)
        assert r.status_code == 413 and publisher.published == []
        r = await client.post("/v1/events", content=big * 5, headers=JSON | BEARER)
        assert r.status_code == 413
    app = create_orchestrator(bootstrap(orchestrator_settings(database_url, orch_schema),
                                        KafkaSettings(), DECIDER, run_workers=False))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.post("/v1/webhooks/sms", content=big, headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413


async def test_orchestrator_refuses_big_bodies_before_authentication(
        database_url: str, orch_schema: str) -> None:
    """FastAPI reads a route's body before its auth dependency runs: the app-wide limit
    refuses a body over 64 KiB first, declared (Content-Length) or streamed (chunked)."""
    app = create_orchestrator(bootstrap(orchestrator_settings(database_url, orch_schema),
                                        KafkaSettings(), DECIDER, run_workers=False))
    big = b"x" * (64 * 1024 + 1)
    enroll = "/v1/leads/lead-1/enrollments"
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for headers in [{}, {"Authorization": f"Bearer {API}"}]:
            for method, path in [("POST", enroll), ("DELETE", "/v1/leads/lead-1"),
                                 ("POST", "/v1/admin/clock/advance")]:
                r = await client.request(method, path, content=big, headers=JSON | headers)
                assert r.status_code == 413, (method, path, headers, r.text)
        r = await client.post(enroll, content=b'{"program": "manual"}',  # small: unchanged
                              headers=JSON | {"Authorization": f"Bearer {ENROLL_T}"})
        assert r.status_code == 201, r.text

    sent = 0

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse
        nonlocal sent
        while sent < 64 * 1024 * 1024:
            sent += 16 * 1024
            yield b"x" * (16 * 1024)

    async with client_for(app) as client:
        for path in (enroll, "/v1/webhooks/sms"):
            sent = 0
            r = await client.post(path, content=endless(), headers=JSON)
            assert r.status_code == 413 and r.json()["detail"] == "request body over 65536 bytes"
            assert sent <= 128 * 1024  # stopped reading right after the limit
