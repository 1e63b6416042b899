"""Email over SMTP (aiosmtplib): a few connections, reused between messages (checked with NOOP
after a pause); STARTTLS, implicit TLS and AUTH as configured. SMTP replies and socket
errors are translated into ProviderUnavailable (connection problems, 4xx) and ProviderRejected
(5xx); the reply text, which may echo the address, is not kept.

SMTP has no idempotency key: a message the server accepted but whose acceptance we never saw
(the connection dropped after DATA) cannot be told from one never sent. So the transaction is
run a step at a time, and the caller's hand-off (adapters/handoff.py) is awaited once the server
has accepted the envelope and answered DATA with 354, right before the message and its
end-of-data dot are written (in one write): an attempt interrupted earlier sent nothing the
server could deliver, and one interrupted after it has handed the whole message to the kernel.
`Message-ID` is derived from the dispatch message id, so receiving systems can spot a
duplicate."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Literal, Protocol

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.typing import SMTPStatus

from services.dispatch.adapters.handoff import Handoff, no_handoff
from services.dispatch.domain.email import POLICY, InvalidAddress
from services.dispatch.domain.errors import ProviderError, ProviderRejected, ProviderUnavailable

log = logging.getLogger(__name__)
Security = Literal["none", "starttls", "tls"]


class Mailer(Protocol):
    """Hands emails to a mail server."""

    async def send(self, message: EmailMessage, *, handoff: Handoff = no_handoff) -> str:
        """Send `message`, awaiting `handoff` right before the message data goes out; the
        provider's id of it (its Message-ID). Raises ProviderError."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to connect. `security`: none (plain, e.g. a local relay), starttls
    (upgrade a plain connection, required) or tls (implicit TLS, usually port 465)."""

    host: str = "127.0.0.1"
    port: int = 1025
    security: Security = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    validate_certs: bool = True
    ca_file: str | None = None


class SmtpMailer:
    """The real Mailer: a small pool of connections, opened on demand (one while sends come one
    at a time), each carrying one transaction at a time. A connection idle for more than
    `NOOP_AFTER` seconds is checked with NOOP before reuse; a busier one is not (a round trip
    per message otherwise), and one the server closed is seen as disconnected anyway."""

    NOOP_AFTER = 10.0

    def __init__(self, config: SmtpConfig, *, connections: int = 1) -> None:
        self.config = config
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # last used last
        self._connections = connections
        self._slots = asyncio.Semaphore(connections)

    async def send(self, message: EmailMessage, *, handoff: Handoff = no_handoff) -> str:
        sender, recipients, raw = envelope(message)
        async with self._slots:
            client: aiosmtplib.SMTP | None = None
            try:
                client = await self._checkout()
                await _envelope(client, sender, recipients, size=len(raw))
                await _data(client, raw, handoff)
            except aiosmtplib.SMTPException as exc:
                _drop(client)
                raise translate(exc) from None
            except ValueError:  # an address SMTP cannot carry (not ASCII, unquotable)
                _drop(client)
                raise InvalidAddress from None
            except OSError as exc:  # refused, reset, unreachable, TLS handshake
                _drop(client)
                raise ProviderUnavailable("connection_failed", type(exc).__name__) from None
            except BaseException:  # cancelled mid-transaction: the connection state is unknown
                _drop(client)
                raise
            self._idle.append((client, time.monotonic()))
        return str(message["Message-ID"])

    async def close(self) -> None:
        for _ in range(self._connections):  # wait for the sends in progress
            await self._slots.acquire()
        try:
            idle, self._idle = self._idle, []
            for client, _ in idle:
                if client.is_connected:
                    try:  # a polite QUIT, but never a long wait for it on shutdown
                        await client.quit(timeout=min(5.0, self.config.timeout))
                    except (aiosmtplib.SMTPException, OSError):
                        client.close()
        finally:
            for _ in range(self._connections):
                self._slots.release()

    async def _checkout(self) -> aiosmtplib.SMTP:
        """The most recently used open connection, else a new one."""
        while self._idle:
            client, used = self._idle.pop()
            if not client.is_connected:
                continue
            if time.monotonic() - used < self.NOOP_AFTER:
                return client
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError):  # the server closed an idle connection
                _drop(client)
        cfg = self.config
        client = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
            use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
            validate_certs=cfg.validate_certs, cert_bundle=cfg.ca_file, username=cfg.username,
            password=cfg.password)
        await client.connect()
        return client


async def _envelope(client: aiosmtplib.SMTP, sender: str, recipients: list[str], *,
                    size: int) -> None:
    """MAIL FROM (with the message's size, RFC 1870, where the server takes it: one that is too
    large is refused here, before the hand-off) and RCPT TO. We send to one recipient, so a
    refused one is the message's failure."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:  # an old server: plain SMTP, no extensions
            await client.helo()
    await client.mail(sender, options=[f"SIZE={size}"] if client.supports_extension("size")
                      else [])
    for recipient in recipients:
        await client.rcpt(recipient)


async def _data(client: aiosmtplib.SMTP, raw: bytes, handoff: Handoff) -> None:
    """DATA; once the server waits for the message (354), the hand-off; then the message with
    its end-of-data dot in one write (dot-stuffed, CRLF line endings, as aiosmtplib's own
    `data()` sends it), and the server's verdict. `data()` itself cannot pause between the two."""
    start = await client.execute_command(b"DATA")
    if start.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    await handoff()
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("connection lost")
    protocol.write(PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) + b".\r\n")
    reply = await protocol.read_response(timeout=client.timeout)
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)


def _drop(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        client.close()


def envelope(message: EmailMessage) -> tuple[str, list[str], bytes]:
    """Envelope sender, recipients and the wire bytes. The message is flattened with our own
    policy (not the client's default), which keeps `List-Unsubscribe` URLs on one line."""
    sender = parseaddr(str(message["From"]))[1]
    recipients = [addr for _, addr in getaddresses([str(v) for v in message.get_all("To", [])])]
    return sender, recipients, message.as_bytes(policy=POLICY)


def translate(exc: aiosmtplib.SMTPException) -> ProviderError:
    """A domain error for an SMTP failure. Trouble with the server itself (connection, greeting,
    HELO, AUTH, timeouts) and 4xx replies are transient: the message is fine, the server is not,
    so it waits for a retry. A 5xx reply to MAIL, RCPT or DATA is about this message: permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return translate(exc.recipients[0])
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return ProviderUnavailable("timeout", type(exc).__name__)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        step = _MESSAGE_STEPS.get(type(exc))
        if step is None:
            return ProviderUnavailable("smtp_server_refused",
                                       f"SMTP {exc.code} ({type(exc).__name__})")
        if 500 <= exc.code < 600:
            return ProviderRejected("smtp_5xx", f"SMTP {exc.code} on {step}")
        return ProviderUnavailable("smtp_4xx", f"SMTP {exc.code} on {step}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return ProviderUnavailable("smtp_not_supported", type(exc).__name__)
    return ProviderUnavailable("connection_failed", type(exc).__name__)


_MESSAGE_STEPS = {aiosmtplib.SMTPSenderRefused: "MAIL FROM",
                  aiosmtplib.SMTPRecipientRefused: "RCPT TO", aiosmtplib.SMTPDataError: "DATA"}


@dataclass
class FakeMailer:
    """A Mailer that keeps what it is sent (`sent`) and raises the errors queued in `failures`
    first, one per send, like a flaky server."""

    sent: list[EmailMessage] = field(default_factory=list)
    failures: list[ProviderError] = field(default_factory=list)
    closed: bool = False

    async def send(self, message: EmailMessage, *, handoff: Handoff = no_handoff) -> str:
        await handoff()
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return str(message["Message-ID"])

    async def close(self) -> None:
        self.closed = True
