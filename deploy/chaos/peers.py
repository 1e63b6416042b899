"""The providers dispatch talks to, as real servers on loopback in the driver's event loop: an
SMTP server (aiosmtpd) and an HTTP server for the webhook channel. Both record every message
they accept: the message id dispatch puts in `X-Nurture-Message-Id` / `webhook-id`, and who it
was for (the lead id is the local part of the load's addresses, read from `To`; a webhook body
names lead and step). They can be told to misbehave: answer 4xx / 500 / 429 with Retry-After,
hang past the client's timeout without taking the message, take it but answer only after the
client's timeout (a reply lost: the client retries what the receiver already has), or refuse
connections (the listening socket is closed, then reopened on the same port)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.parser import BytesParser
from email.policy import default as default_policy

import orjson
import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.chaos.tally import Delivery
from deploy.local.stack import free_port


@dataclass
class Received:
    """Accepted deliveries with the monotonic time of each, repeats included."""

    items: list[tuple[Delivery, float]] = field(default_factory=list)

    def add(self, delivery: Delivery) -> None:
        self.items.append((delivery, time.monotonic()))

    @property
    def deliveries(self) -> list[Delivery]:
        return [d for d, _ in self.items]

    @property
    def times(self) -> list[float]:
        return [t for _, t in self.items]


def email_delivery(raw: bytes) -> Delivery:
    """An email as received: its `X-Nurture-Message-Id`, and the lead it went to, the local
    part of its one `To` address (the load's addresses are `<lead id>@chaos.example.test`);
    the step is the command's (tally resolves it from the message id)."""
    headers = BytesParser(policy=default_policy).parsebytes(raw, headersonly=True)
    addresses: tuple[Address, ...] = getattr(headers.get("To"), "addresses", ())
    lead = (addresses[0].username or None) if len(addresses) == 1 else None
    return Delivery("email", str(headers.get("X-Nurture-Message-Id", "")), lead)


def webhook_delivery(message_id: str, body: bytes) -> Delivery:
    """A webhook as received: its `webhook-id`, and the lead and step its body names."""
    try:
        data = orjson.loads(body).get("data") or {}
    except (orjson.JSONDecodeError, AttributeError):
        data = {}
    lead, step = data.get("lead_id"), data.get("step_id")
    return Delivery("webhook", message_id, lead if isinstance(lead, str) else None,
                    step if isinstance(step, str) else None)


class SmtpPeer:
    """Modes: `ok`, `tempfail` (451 to every DATA), `hang` (DATA answered 451 only after
    `hang_seconds`, past dispatch's SMTP timeout, and not taken), `refuse` (port closed)."""

    def __init__(self, *, hang_seconds: float = 8.0) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.hang_seconds = hang_seconds
        self.received = Received()
        self.refused_data = 0
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.mode in ("tempfail", "hang"):
            self.refused_data += 1
            if self.mode == "hang":
                await asyncio.sleep(self.hang_seconds)
            return "451 4.3.0 chaos: try again later"
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        self.received.add(email_delivery(raw))
        return "250 2.0.0 OK queued"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def connect() -> SMTP:
            session = SMTP(self, hostname="chaos-peer.test")
            self._sessions = [s for s in self._sessions if s.transport is not None
                              and not s.transport.is_closing()] + [session]
            return session

        self._server = await loop.create_server(connect, "127.0.0.1", self.port,
                                                reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in self._sessions:  # open connections too: dispatch reuses one
                if session.transport is not None:
                    session.transport.close()
            self._sessions = []
            await self._server.wait_closed()
            self._server = None

    async def set_mode(self, mode: str) -> None:
        if mode == "refuse":
            await self.stop()
        elif self._server is None:
            await self.start()
        self.mode = mode


class HttpPeer:
    """The webhook receiver. Modes: `ok` (200), `500`, `429` (with Retry-After), `hang` (answers
    504 only after `hang_seconds`, past dispatch's timeout, and takes nothing), `slow` (takes
    the call, then answers 200 only after `hang_seconds`: dispatch has given up by then and
    retries a webhook the receiver already has), `refuse`."""

    def __init__(self, *, hang_seconds: float = 6.0, retry_after: int = 2) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.hang_seconds, self.retry_after = hang_seconds, retry_after
        self.received = Received()
        self.refused = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            mode = self.mode
            if mode == "slow":
                self.received.add(webhook_delivery(request.headers.get("webhook-id", ""), body))
                await asyncio.sleep(self.hang_seconds)
                return JSONResponse({"ok": True})
            if mode == "hang":
                await asyncio.sleep(self.hang_seconds)
                return Response(status_code=504)
            if mode == "500":
                self.refused += 1
                return Response(status_code=500)
            if mode == "429":
                self.refused += 1
                return Response(status_code=429, headers={"Retry-After": str(self.retry_after)})
            self.received.add(webhook_delivery(request.headers.get("webhook-id", ""), body))
            return JSONResponse({"ok": True})
        return Starlette(routes=[Route("/hooks", hook, methods=["POST"])])

    async def start(self) -> None:
        self._server = uvicorn.Server(uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_config=None, lifespan="off",
            timeout_graceful_shutdown=1))
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + 30
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("HTTP peer exited on start")
            if time.monotonic() > deadline:
                raise RuntimeError("HTTP peer did not start")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 30)
            self._server = self._task = None

    async def set_mode(self, mode: str) -> None:
        if mode == "refuse":
            await self.stop()
        elif self._server is None:
            await self.start()
        self.mode = mode
