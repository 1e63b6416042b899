"""The SMTP mailer against a real SMTP server (aiosmtpd) on loopback, and the same contract for
the fake: accepted mail returns its Message-ID, a 4xx is transient, the connection is reused
and survives a failure; STARTTLS with AUTH and implicit TLS work with a private CA."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from deploy.local.stack import free_port
from schemas.records import SendMessage
from services.dispatch.adapters.smtp import FakeMailer, Mailer, SmtpConfig, SmtpMailer
from services.dispatch.domain.email import EmailContent, Sender, build_email
from services.dispatch.domain.errors import HandoffRefused, ProviderUnavailable
from services.dispatch.domain.links import Tracker
from tests.dispatch.integration.dispatch_harness import SmtpSink

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def email(n: int) -> EmailMessage:
    cmd = SendMessage(message_id=f"msg-{n}", lead_id="lead-1", channel="email", template="t",
                      program_id="p", step_id="s", context={"email": "ada@example.com"})
    tracker = Tracker(cmd, "https://t.example", b"k" * 32, NOW, timedelta(days=1))
    return build_email(cmd, EmailContent(f"Hello {n}", "Hi\n", "<p>Hi</p>"),
                       sender=Sender("hi@acme.example", "acme.example"), tracker=tracker,
                       track_opens=True, track_clicks=True, now=NOW)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = SmtpSink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["fake", "smtp"])
async def mailer(request: pytest.FixtureRequest,
                 sink: SmtpSink) -> AsyncIterator[tuple[Mailer, Any]]:
    """The fake and the real mailer, each with a way to make its next send fail with 451."""
    if request.param == "fake":
        fake = FakeMailer()
        yield fake, lambda: fake.failures.append(ProviderUnavailable("smtp_4xx", "SMTP 451"))
        return
    real = SmtpMailer(SmtpConfig(port=sink.port))
    yield real, lambda: sink.replies.append("451 4.3.0 try later")
    await real.close()


async def test_contract_accepts_refuses_transiently_and_recovers(
        mailer: tuple[Mailer, Any]) -> None:
    sender, fail_next = mailer
    assert await sender.send(email(1)) == "<msg-1@acme.example>"
    fail_next()
    with pytest.raises(ProviderUnavailable) as refused:
        await sender.send(email(2))
    assert refused.value.reason == "smtp_4xx"
    assert await sender.send(email(2)) == "<msg-2@acme.example>"


async def test_one_connection_is_reused(sink: SmtpSink) -> None:
    mailer = SmtpMailer(SmtpConfig(port=sink.port))
    try:
        for n in range(3):
            await mailer.send(email(n))
    finally:
        await mailer.close()
    assert [m["Subject"] for m in sink.received] == ["Hello 0", "Hello 1", "Hello 2"]
    assert sink.connections == 1


async def test_a_closed_port_is_a_transient_connection_failure() -> None:
    mailer = SmtpMailer(SmtpConfig(port=free_port(), timeout=5))
    with pytest.raises(ProviderUnavailable, match="connection_failed"):
        await mailer.send(email(1))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def check_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"nurture", b"s3cret")
    return AuthResult(success=ok, handled=False)


async def test_starttls_with_auth(certificate: tuple[Path, Path]) -> None:
    sink = SmtpSink(tls_context=server_context(certificate), require_starttls=True,
                    authenticator=check_login, auth_required=True)
    await sink.start()
    config = SmtpConfig(port=sink.port, security="starttls", username="nurture",
                        password="s3cret", ca_file=str(certificate[0]))
    good, bad = SmtpMailer(config), SmtpMailer(SmtpConfig(
        port=sink.port, security="starttls", username="nurture", password="wrong",
        ca_file=str(certificate[0])))
    try:
        assert await good.send(email(1)) == "<msg-1@acme.example>"
        with pytest.raises(ProviderUnavailable, match="smtp_server_refused"):
            await bad.send(email(2))
    finally:
        await good.close()
        await bad.close()
        await sink.stop()
    assert [m["Subject"] for m in sink.received] == ["Hello 1"]


async def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    sink = SmtpSink(ssl=server_context(certificate))
    await sink.start()
    mailer = SmtpMailer(SmtpConfig(port=sink.port, security="tls",
                                   ca_file=str(certificate[0])))
    try:
        assert await mailer.send(email(1)) == "<msg-1@acme.example>"
    finally:
        await mailer.close()
        await sink.stop()
    assert len(sink.received) == 1


async def test_concurrent_sends_share_a_small_pool_of_connections(sink: SmtpSink) -> None:
    mailer = SmtpMailer(SmtpConfig(port=sink.port), connections=3)
    try:
        ids = await asyncio.gather(*(mailer.send(email(n)) for n in range(12)))
        await mailer.send(email(12))  # after the burst: an open connection is reused
    finally:
        await mailer.close()
    assert sorted(ids) == sorted(f"<msg-{n}@acme.example>" for n in range(12))
    assert sorted(m["Subject"] for m in sink.received) == sorted(f"Hello {n}" for n in range(13))
    assert 1 < sink.connections <= 3


async def test_contract_a_refused_hand_off_sends_nothing(mailer: tuple[Mailer, Any],
                                                         sink: SmtpSink) -> None:
    sender, _ = mailer
    reached: list[str] = []

    async def refuse() -> None:
        reached.append("hand-off")
        raise HandoffRefused("msg-1")

    with pytest.raises(HandoffRefused):
        await sender.send(email(1), handoff=refuse)
    assert reached == ["hand-off"]
    assert sink.received == [] and getattr(sender, "sent", []) == []
    assert await sender.send(email(2)) == "<msg-2@acme.example>"  # the next one goes through


async def test_the_hand_off_comes_after_the_envelope_and_before_the_data() -> None:
    class Counting(SmtpSink):
        rcpts = 0

        async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
                self, server: SMTP, session: Session, envelope: Envelope, address: str,
                options: list[str]) -> str:
            self.rcpts += 1
            envelope.rcpt_tos.append(address)
            return "250 OK"

    sink = Counting()
    await sink.start()
    mailer = SmtpMailer(SmtpConfig(port=sink.port))
    seen: list[tuple[int, int]] = []

    async def handoff() -> None:  # what the server has when the point is reached
        seen.append((sink.rcpts, len(sink.received)))

    try:
        await mailer.send(email(1), handoff=handoff)
    finally:
        await mailer.close()
        await sink.stop()
    assert seen == [(1, 0)] and len(sink.received) == 1  # envelope accepted, no data yet
