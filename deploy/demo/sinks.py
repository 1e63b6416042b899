"""The demo's peers of dispatch: an SMTP server that keeps every email (so the simulated leads
can open them and follow their links) and a CRM endpoint that keeps every task."""

from __future__ import annotations

import asyncio
import email
import html as htmllib
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from email.utils import getaddresses
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Request

OPEN = re.compile(r"""https?://[^\s"'<>]+/t/open/[^\s"'<>]+""")
CLICK = re.compile(r"""https?://[^\s"'<>]+/t/click/[^\s"'<>]+""")
HTTPS_UNSUB = re.compile(r"<(https?://[^>]+/t/unsubscribe/[^>]+)>")


@dataclass(frozen=True)
class Mail:
    """One received email, reduced to what a reader acts on."""

    to: str
    message_id: str
    subject: str
    open_url: str | None
    click_urls: tuple[str, ...]
    unsubscribe_url: str | None


def parse_mail(raw: bytes) -> Mail:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    html = msg.get_body(("html",))
    text = htmllib.unescape(html.get_content()) if html is not None else ""
    unsub = HTTPS_UNSUB.search(str(msg.get("List-Unsubscribe", "")))
    to = getaddresses([str(msg.get("To", ""))])
    opened = OPEN.search(text)
    return Mail(to=to[0][1].lower() if to else "",
                message_id=str(msg.get("X-Nurture-Message-Id", "")),
                subject=str(msg.get("Subject", "")),
                open_url=opened.group(0) if opened else None,
                click_urls=tuple(dict.fromkeys(CLICK.findall(text))),
                unsubscribe_url=unsub.group(1) if unsub else None)


class Mailbox:
    """aiosmtpd handler (it runs in the controller's thread): parses and keeps every message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        mail = parse_mail(envelope.original_content or envelope.content)
        with self._lock:
            self._mails.append(mail)
        return "250 OK"

    def count(self) -> int:
        with self._lock:
            return len(self._mails)

    def since(self, start: int) -> list[Mail]:
        with self._lock:
            return self._mails[start:]


@asynccontextmanager
async def smtp_sink(port: int) -> AsyncIterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield box
    finally:
        await asyncio.to_thread(controller.stop)


def crm_app(tasks: list[dict[str, Any]]) -> FastAPI:
    """The CRM's task endpoint as dispatch calls it: POST JSON, answer 201."""
    app = FastAPI()

    @app.post("/tasks", status_code=201)
    async def create_task(request: Request) -> dict[str, str]:
        payload = await request.json()
        tasks.append({"lead_id": payload.get("lead_id"),
                      "program_id": (payload.get("why_now") or {}).get("program_id")})
        return {"id": str(len(tasks))}

    return app


class _Server(uvicorn.Server):
    """Leaves signals to the demo (uvicorn would stop on SIGINT/SIGTERM behind its back)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[str]:
    """An ASGI app under uvicorn on 127.0.0.1:`port`, in this event loop."""
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"server on port {port} stopped before it started")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
