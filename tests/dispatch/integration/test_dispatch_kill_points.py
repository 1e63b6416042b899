"""kill -9 of a real dispatch process at each point of an attempt, for every channel, then a
restart: what the provider was handed decides the outcome (docs/reliability.md, "Where an
attempt can be interrupted").

- before the connection (the provider's port never completes the handshake) and during the
  conversation (SMTP: the server holds its reply to RCPT; HTTP: the server never answers the
  TLS hello), the provider has nothing: the message is sent once, by the restarted process;
- after the hand-off (SMTP: the server took the message data and holds its reply; HTTP: the
  server took the request and holds its response), only the provider knows: the channel's
  guarantee decides. at-most-once: `failed` as `sent_unconfirmed`, never resent;
  at-least-once: resent with the same Message-ID / Idempotency-Key / webhook-id."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.local.stack import free_port
from services.common.config.settings import KafkaSettings
from services.dispatch.adapters import tables as t
from services.dispatch.adapters.migrate import upgrade
from tests.dispatch.integration.dispatch_harness import SECRET, SmtpSink, command, produce
from tests.support import ChildProcess, isolated_kafka, serve, wait_until

ROOT = Path(__file__).resolve().parents[3]
CHANNELS = ("email", "sms", "crm_task", "webhook")
DEFAULTS = {"email": "at-most-once", "sms": "at-most-once", "crm_task": "at-least-once",
            "webhook": "at-least-once"}
FLIPPED = {c: "at-least-once" if g == "at-most-once" else "at-most-once"
           for c, g in DEFAULTS.items()}


class HoldingSmtp(SmtpSink):
    """The SMTP server, told where to hold: at `rcpt` (before answering RCPT TO: the envelope
    is not complete) or at `data` (after the message data was taken, before answering it)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: str | None = None
        self.held = 0
        self.release = asyncio.Event()

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope, address: str,
            options: list[str]) -> str:
        if self.hold == "rcpt":
            self.held += 1
            await self.release.wait()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.hold == "data":
            self.held += 1
            await self.release.wait()
        return reply


@dataclass
class HoldingPeer:
    """The HTTP peer (SMS API, CRM, webhook receiver): records every request it takes (with
    its idempotency key) and, while `hold` is set, keeps its response."""

    taken: list[tuple[str, str]] = field(default_factory=list)  # (channel, key)
    hold: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            await request.body()
            path = request.url.path
            channel = "sms" if "/Accounts/" in path else "crm_task" if "/crm" in path \
                else "webhook"
            key = request.headers.get("idempotency-key") or request.headers["webhook-id"]
            self.taken.append((channel, key))
            if self.hold:
                await self.release.wait()
            return JSONResponse({"id": f"crm-{len(self.taken)}", "sid": "SM1"}, 201)
        return Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])


class TlsStall:
    """A server that accepts connections and reads, but never answers the TLS hello: a client
    stays in its handshake, before any request went out."""

    def __init__(self) -> None:
        self.greeted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsStall:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if await reader.read(1):
                self.greeted += 1
            await reader.read()  # until the client goes away
            writer.close()
        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


@contextmanager
def unreachable() -> Iterator[int]:
    """A port whose accept queue is full: a connection to it never completes (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        yield port
    finally:
        filler.close()
        listener.close()


@dataclass
class Endpoints:
    smtp_port: int
    http_base: str  # scheme://host:port


class DispatchProcess(ChildProcess):
    """`nurture-dispatch serve` as a child process on a schema of its own."""

    def __init__(self, tmp: Path, database_url: str, kafka: KafkaSettings, schema: str,
                 guarantees: dict[str, str]) -> None:
        self.tmp, self.schema, self.port = tmp, schema, free_port()
        self.env = {**os.environ, "DATABASE_URL": database_url,
                    "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                    "NURTURE_TOPIC_PREFIX": kafka.topic_prefix,
                    "NURTURE_DISPATCH_DB_SCHEMA": schema, "NURTURE_DISPATCH_PORT": str(self.port),
                    "NURTURE_TRACKING_SECRET": SECRET, "NURTURE_LOG_FORMAT": "text",
                    "NURTURE_DISPATCH_POLL_SECONDS": "0.1",
                    "NURTURE_DISPATCH_RECOVERY_POLL_SECONDS": "0.2",
                    "NURTURE_DISPATCH_LEASE_SECONDS": "2",
                    # the providers' timeouts outlast the wait for the kill point: the kill
                    # lands while the attempt is still there, not after it timed out (the
                    # test ages the `sending` rows instead of waiting out the sending timeout)
                    "NURTURE_DISPATCH_SMTP_TIMEOUT_SECONDS": "60",
                    "NURTURE_DISPATCH_HTTP_TIMEOUT_SECONDS": "60",
                    "NURTURE_DISPATCH_SENDING_TIMEOUT_SECONDS": "61",
                    "NURTURE_DISPATCH_SMS_ACCOUNT_SID": "AC123",
                    "NURTURE_DISPATCH_SMS_AUTH_TOKEN": "sms-token",
                    "NURTURE_DISPATCH_SMS_FROM": "+15550001111",
                    "NURTURE_DISPATCH_CRM_TOKEN": "crm-token",
                    "NURTURE_DISPATCH_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    **{f"NURTURE_DISPATCH_GUARANTEE_{c.upper()}": g
                       for c, g in guarantees.items()}}
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, to: Endpoints) -> None:
        self._spawn(to)

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"dispatch exited:\n{self.log()}")
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://127.0.0.1:{self.port}/readyz")).is_success
            except httpx.TransportError:
                return False
        await wait_until(ready, timeout=60, what="dispatch ready")

    def _spawn(self, to: Endpoints) -> None:
        env = self.env | {
            "NURTURE_DISPATCH_SMTP_PORT": str(to.smtp_port),
            "NURTURE_DISPATCH_SMS_BASE_URL": f"{to.http_base}/sms",
            "NURTURE_DISPATCH_CRM_URL": f"{to.http_base}/crm/tasks",
            "NURTURE_DISPATCH_WEBHOOK_URL": f"{to.http_base}/hooks"}
        with open(self.tmp / "dispatch.log", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.dispatch", "serve"], env=env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT)

    async def unconfirmed(self) -> dict[tuple[str, str], float]:
        """nurture_dispatch_unconfirmed_attempts_total by (channel, resolution)."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        found: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            if line.startswith("nurture_dispatch_unconfirmed_attempts_total{"):
                labels = dict(part.split("=") for part in line[line.index("{") + 1:
                                                                line.index("}")].split(","))
                found[labels["channel"].strip('"'), labels["resolution"].strip('"')] = \
                    float(line.rsplit(" ", 1)[1])
        return found

    def log(self) -> str:
        return (self.tmp / "dispatch.log").read_text()[-4000:]


@dataclass
class Peers:
    smtp: HoldingSmtp
    http: HoldingPeer
    http_base: str
    stall: TlsStall

    def receipts(self, channel: str) -> list[str]:
        """The message ids (Message-ID / idempotency key) the provider of `channel` took."""
        if channel == "email":
            return [str(m["X-Nurture-Message-Id"]) for m in self.smtp.received]
        return [key for c, key in self.http.taken if c == channel]


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    smtp, http = HoldingSmtp(), HoldingPeer()
    await smtp.start()
    try:
        async with serve(http.app()) as url, TlsStall() as stall:
            yield Peers(smtp, http, url, stall)
            smtp.release.set()  # the held sessions of the killed process end
            http.release.set()
    finally:
        smtp.release.set()
        http.release.set()
        await smtp.stop()


class Row(NamedTuple):
    status: str
    error: str | None
    leased: bool  # claimed: due again only when the lease ends
    attempts: int


async def statuses(engine: AsyncEngine) -> dict[str, Row]:
    """message id -> its delivery row."""
    d = t.deliveries
    async with engine.connect() as conn:
        rows = (await conn.execute(select(d))).all()
    return {r.message_id: Row(r.status, r.last_error, r.next_attempt_at is not None
                              and (r.next_attempt_at - r.created_at).total_seconds() > 1,
                              r.attempts)
            for r in rows}


async def age_sending_rows(engine: AsyncEngine) -> None:
    """What waiting out the sending timeout would do: the interrupted attempts look stale."""
    d = t.deliveries
    async with engine.begin() as conn:
        await conn.execute(update(d).where(d.c.status == "sending").values(
            updated_at=d.c.updated_at - timedelta(hours=1)))


POINTS = ["before-connect", "during-conversation", "after-handoff",
          "after-handoff-flipped-guarantees"]


@pytest.mark.parametrize("point", POINTS)
async def test_kill_9_at_each_point_of_an_attempt(point: str, tmp_path: Path, peers: Peers,
                                                  database_url: str,
                                                  kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap)
    schema = f"kp_{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    guarantees = FLIPPED if point.endswith("flipped-guarantees") else DEFAULTS
    dispatch = DispatchProcess(tmp_path, database_url, kafka, schema, guarantees)
    commands = {c: command(f"lead-{c}", channel=c) for c in CHANNELS}
    ids = {c: cmd["message_id"] for c, cmd in commands.items()}
    normal = Endpoints(peers.smtp.port, peers.http_base)
    try:
        with unreachable() as dead_port:
            first = {"before-connect": Endpoints(dead_port, f"http://127.0.0.1:{dead_port}"),
                     "during-conversation": Endpoints(peers.smtp.port,
                                                      f"https://127.0.0.1:{peers.stall.port}"),
                     }.get(point, normal)
            peers.smtp.hold = {"during-conversation": "rcpt", "before-connect": None}.get(
                point, "data")
            peers.http.hold = point.startswith("after-handoff")
            await dispatch.start(first)
            await produce(kafka, list(commands.values()))
            await wait_until(lambda: at_the_point(point, peers, engine, set(ids.values())),
                             timeout=30, what=f"every channel's attempt at {point}")
            dispatch.kill()
        await age_sending_rows(engine)
        peers.smtp.hold, peers.http.hold = None, False
        peers.smtp.release.set()
        peers.http.release.set()

        await dispatch.start(normal)

        async def settled() -> bool:
            found = await statuses(engine)
            return all(i in found and found[i].status in t.FINAL_STATUSES for i in ids.values())
        await wait_until(settled, timeout=60, what="every delivery settled")
        final = await statuses(engine)
        unconfirmed = await dispatch.unconfirmed()
    finally:
        dispatch.stop()
        await engine.dispose()

    for channel, message_id in ids.items():
        row = final[message_id]
        receipts = peers.receipts(channel)
        assert set(receipts) <= {message_id}, (channel, receipts)
        outcome = (channel, row.status, len(receipts), row.attempts,
                   unconfirmed[channel, "failed"], unconfirmed[channel, "resent"])
        if not point.startswith("after-handoff"):  # the provider had nothing: sent once,
            # and the interrupted attempt, which never reached its hand-off, is not counted
            assert outcome == (channel, "sent", 1, 1, 0, 0), dispatch.log()
        elif guarantees[channel] == "at-most-once":  # taken once, never resent
            assert outcome == (channel, "failed", 1, 1, 1, 0), dispatch.log()
            assert row.error is not None and row.error.startswith("sent_unconfirmed")
        else:  # resent under the same id: the receiver dedupes
            assert outcome == (channel, "sent", 2, 2, 0, 1), dispatch.log()


async def at_the_point(point: str, peers: Peers, engine: AsyncEngine, ids: set[str]) -> bool:
    """Whether every channel's first attempt has reached `point` (and is still there: none
    failed yet)."""
    rows = (await statuses(engine)).values()
    if len(rows) != len(ids) or any(row.error is not None for row in rows):
        return False
    if point == "before-connect":  # all claimed (leased); their connections cannot complete
        return all(row.status == "pending" and row.leased for row in rows)
    if point == "during-conversation":  # envelope half done / TLS hello unanswered
        return peers.smtp.held == 1 and peers.stall.greeted == 3 \
            and all(row.status == "pending" for row in rows)
    return peers.smtp.held == 1 and len(peers.http.taken) == 3 \
        and all(row.status == "sending" for row in rows)
