"""Channel adapters: what the HTTP channels send (the webhook signature itself:
tests/common/unit/test_standard_webhooks.py), and how provider answers become transient or
permanent errors (HTTP through httpx's MockTransport, SMTP replies through aiosmtplib's own
exceptions)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import aiosmtplib
import httpcore
import httpx
import pytest

from services.common.webhooks import signature
from services.dispatch.adapters.crm import HttpTaskApi
from services.dispatch.adapters.handoff import http_trace
from services.dispatch.adapters.http import retry_after
from services.dispatch.adapters.sms import TwilioConfig, TwilioSms
from services.dispatch.adapters.smtp import translate
from services.dispatch.adapters.webhook import HttpWebhookSender
from services.dispatch.domain.errors import ProviderError, ProviderRejected, ProviderUnavailable
from services.dispatch.domain.messages import Sms, Task, Webhook

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SECRET = "s3cret-of-16-bytes"

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, seen: list[httpx.Request]) -> httpx.AsyncClient:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)
    return httpx.AsyncClient(transport=httpx.MockTransport(record))


async def test_sms_posts_the_twilio_form_with_basic_auth() -> None:
    seen: list[httpx.Request] = []
    async with client(lambda r: httpx.Response(201, json={"sid": "SM1"}), seen) as http:
        sms = TwilioSms(http, TwilioConfig("https://sms.example/", "AC1", "tok", "+15550001"))
        assert await sms.send(Sms("m1", "+14155550123", "Hello")) == "SM1"
    (request,) = seen
    assert str(request.url) == "https://sms.example/2010-04-01/Accounts/AC1/Messages.json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AC1:tok").decode()
    assert request.headers["idempotency-key"] == "m1"
    assert request.content == b"To=%2B14155550123&From=%2B15550001&Body=Hello"


async def test_crm_posts_json_with_a_bearer_token() -> None:
    seen: list[httpx.Request] = []
    async with client(lambda r: httpx.Response(200, json={"id": 42}), seen) as http:
        api = HttpTaskApi(http, url="https://crm.example/tasks", token="t0k")
        assert await api.create(Task("m1", {"subject": "Call"})) == "42"
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert json.loads(seen[0].content) == {"subject": "Call"}


async def test_webhook_is_signed_over_the_exact_body() -> None:
    seen: list[httpx.Request] = []
    async with client(lambda r: httpx.Response(204), seen) as http:
        sender = HttpWebhookSender(http, url="https://hooks.example/in", secret=SECRET)
        await sender.send(Webhook("m1", {"type": "nurture.message", "data": {"x": 1}}), now=NOW)
    request = seen[0]
    assert request.headers["webhook-id"] == "m1"
    assert request.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert request.headers["webhook-signature"] == signature(
        SECRET.encode(), msg_id="m1", timestamp=int(NOW.timestamp()), body=request.content)


@pytest.mark.parametrize(("response", "kind", "reason", "hint"), [
    (httpx.Response(429, headers={"Retry-After": "7"}), ProviderUnavailable, "http_429", 7.0),
    (httpx.Response(503), ProviderUnavailable, "http_5xx", None),
    (httpx.Response(408), ProviderUnavailable, "http_408", None),
    (httpx.Response(400), ProviderRejected, "http_4xx", None),
    (httpx.Response(401), ProviderRejected, "http_4xx", None),
    (httpx.Response(404), ProviderRejected, "http_4xx", None),
])
async def test_http_answers_become_domain_errors(response: httpx.Response,
                                                kind: type[ProviderError], reason: str,
                                                hint: float | None) -> None:
    async with client(lambda r: response, []) as http:
        api = HttpTaskApi(http, url="https://crm.example/tasks", token=None)
        with pytest.raises(kind) as raised:
            await api.create(Task("m1", {}))
    assert raised.value.reason == reason
    assert getattr(raised.value, "retry_after", None) == hint


async def test_network_errors_are_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client(refuse, []) as http:
        with pytest.raises(ProviderUnavailable, match="connection_failed"):
            await HttpTaskApi(http, url="https://crm.example/t", token=None).create(
                Task("m1", {}))


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0), ("999999", 86400.0), ("Sun, 01 Mar 2026 09:01:00 GMT", 60.0),
    ("Sun, 01 Mar 2026 08:00:00 GMT", 0.0), ("soon", None), ("", None),
])
def test_retry_after_header_forms(value: str, seconds: float | None) -> None:
    assert retry_after({"retry-after": value} if value else {}, now=NOW) == seconds


@pytest.mark.parametrize(("exc", "kind", "reason"), [
    (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(
        550, "5.1.1 <ada@example.com> unknown", "ada@example.com")]), ProviderRejected,
     "smtp_5xx"),
    (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(
        450, "mailbox busy", "ada@example.com")]), ProviderUnavailable, "smtp_4xx"),
    (aiosmtplib.SMTPDataError(554, "rejected as spam"), ProviderRejected, "smtp_5xx"),
    (aiosmtplib.SMTPSenderRefused(451, "try later", "hi@x.io"), ProviderUnavailable,
     "smtp_4xx"),
    (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), ProviderUnavailable,
     "smtp_server_refused"),
    (aiosmtplib.SMTPConnectError("refused"), ProviderUnavailable, "connection_failed"),
    (aiosmtplib.SMTPServerDisconnected("gone"), ProviderUnavailable, "connection_failed"),
    (aiosmtplib.SMTPReadTimeoutError("slow"), ProviderUnavailable, "timeout"),
])
def test_smtp_failures_become_domain_errors_without_the_reply_text(
        exc: aiosmtplib.SMTPException, kind: type[ProviderError], reason: str) -> None:
    error = translate(exc)
    assert isinstance(error, kind)
    assert error.reason == reason
    assert "ada@example.com" not in str(error)


@pytest.mark.parametrize(("events", "awaited"), [
    (["connection.connect_tcp.started", "connection.connect_tcp.complete",
      "http11.send_request_headers.started", "http11.send_request_headers.complete",
      "http11.send_request_body.started", "http11.receive_response_headers.started"], 1),
    (["http2.send_request_headers.started"], 1),
    (["connection.start_tls.started", "http11.receive_response_body.started"], 0),
])
async def test_the_http_hand_off_is_the_request_headers_going_out(events: list[str],
                                                                   awaited: int) -> None:
    calls: list[str] = []

    async def handoff() -> None:
        calls.append("hand-off")

    trace = http_trace(handoff)
    request = httpcore.Request("POST", "http://peer.test/")
    for event in events:
        await trace(event, {"request": request})
    assert len(calls) == awaited


async def test_a_proxy_connect_is_not_the_hand_off() -> None:
    calls: list[str] = []

    async def handoff() -> None:
        calls.append("hand-off")

    await http_trace(handoff)("http11.send_request_headers.started",
                              {"request": httpcore.Request("CONNECT", "http://proxy.test/")})
    assert calls == []
