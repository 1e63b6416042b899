"""What the dispatch integration tests share: a real SMTP server (aiosmtpd) and a recording HTTP
peer on loopback, the dispatch service under uvicorn against the session's Kafka and
PostgreSQL, and helpers to produce commands and read outcomes back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from ssl import SSLContext
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.common.tracking import TrackingSettings
from services.dispatch.adapters.migrate import upgrade
from services.dispatch.bootstrap import bootstrap
from services.dispatch.entrypoints.http.app import create_app
from services.dispatch.settings import DispatchSettings
from tests.support import read_topic, serve, wait_until

SECRET = "integration-tracking-secret-0123456789"
FAST = {"poll_seconds": 0.05, "relay_idle_seconds": 0.05, "retry_base_seconds": 0.05,
        "retry_max_seconds": 0.2, "max_attempts": 3, "smtp_timeout_seconds": 5,
        "http_timeout_seconds": 5, "shutdown_grace_seconds": 10,
        "recovery_poll_seconds": 0.1}


class SmtpSink:
    """An aiosmtpd server in the test's event loop that keeps every accepted message and can be
    told to answer DATA with queued replies first (e.g. `451 try later`)."""

    def __init__(self, *, ssl: SSLContext | None = None, **smtp: Any) -> None:
        self.ssl, self.smtp = ssl, smtp
        self.connections = 0
        self.received: list[EmailMessage] = []
        self.raw: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.replies: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(message)
        self.raw.append(raw)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK queued"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def connect() -> SMTP:
            self.connections += 1
            return SMTP(self, hostname="sink.test", **self.smtp)

        self._server = await loop.create_server(connect, "127.0.0.1", 0, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpPeer:
    """A recording HTTP server: SMS API, CRM and webhook receiver in one. `responses` are
    (status, headers) answered first, then 201 with a JSON id."""

    seen: list[Seen] = field(default_factory=list)
    responses: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            self.seen.append(Seen(request.url.path, dict(request.headers), await request.body()))
            if self.responses:
                status, headers = self.responses.pop(0)
                return Response(status_code=status, headers=headers)
            return JSONResponse({"id": f"crm-{len(self.seen)}", "sid": f"SM{len(self.seen)}"},
                                status_code=201)
        return Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])


@dataclass
class Running:
    url: str
    settings: DispatchSettings
    engine: AsyncEngine
    kafka: KafkaSettings

    @property
    def topics(self) -> Topics:
        return Topics(self.kafka.topic_prefix)


@asynccontextmanager
async def dispatch_service(database_url: str, kafka: KafkaSettings, *, schema: str | None = None,
                           **overrides: Any) -> AsyncIterator[Running]:
    """A migrated schema of its own (or `schema`: a restart on an earlier run's tables), and the
    dispatch app serving and ready."""
    schema = schema or f"d_{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    settings = DispatchSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, **(FAST | overrides))
    app = create_app(bootstrap(settings, kafka,
                               TrackingSettings(secret=SECRET)))  # type: ignore[arg-type]
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    async with AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        url = await stack.enter_async_context(serve(app))
        async with httpx.AsyncClient() as client:
            async def ready() -> bool:
                return (await client.get(f"{url}/readyz")).status_code == 200
            await wait_until(ready, timeout=60, what="dispatch ready")
        yield Running(url, settings, engine, kafka)


def command(lead: str = "lead-1", *, channel: str = "email", template: str | None = None,
            message_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "message_id": message_id or uuid.uuid4().hex, "lead_id": lead, "channel": channel,
        "template": template if template is not None else
        {"email": "pricing-followup", "sms": "sms-follow-up-after-open",
         "crm_task": "pricing-call-brief", "webhook": "pricing-followup"}[channel],
        "program_id": "pricing-abandoner", "program_version": 1, "step_id": "pricing-followup",
        "context": {"first_name": "Ada", "last_name": "Lovelace", "email": f"{lead}@example.com",
                    "phone": "+14155550123", "company": "Acme", "owner_id": "owner-7",
                    "stage": "mql", "journey_stage": "decision", "interests": ["streaming"],
                    "scores": {"b2b": {"total": 72.5, "breakdown": [
                        {"rule": "pricing-page", "points": 20}]}}},
        "created_at": now.isoformat(), "expires_at": (now + timedelta(days=1)).isoformat(),
        "subject": None, "due_at": None}
    return body | overrides


async def produce(kafka: KafkaSettings, commands: list[dict[str, Any] | bytes],
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for cmd in commands:
            value = cmd if isinstance(cmd, bytes) else orjson.dumps(cmd)
            key = b"lead-1" if isinstance(cmd, bytes) else str(cmd["lead_id"]).encode()
            await producer.send_and_wait(Topics(kafka.topic_prefix).dispatch, value, key=key,
                                         headers=headers)
    finally:
        await producer.stop()


def decoded(records: list[ConsumerRecord[bytes, bytes]]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


async def outcomes(run: Running, *, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """The events on nurture.events.v1 once `until(events)` holds."""
    records = await read_topic(run.kafka.bootstrap_servers, run.topics.events,
                               until=lambda rs: bool(until(decoded(rs))), timeout=timeout)
    return decoded(records)


async def dead_letters(run: Running, count: int) -> list[dict[str, Any]]:
    records = await read_topic(run.kafka.bootstrap_servers, run.topics.deadletter,
                               until=lambda rs: len(rs) >= count)
    return decoded(records)


def of(events: list[dict[str, Any]], message_id: str, kind: str | None = None) -> list[Any]:
    return [e for e in events if e["data"]["message_id"] == message_id
            and (kind is None or e["type"] == kind)]


async def metric(run: Running, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{run.url}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))
