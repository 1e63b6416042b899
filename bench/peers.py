"""Fake providers for the dispatch and end-to-end benchmarks, in a child process of their own:

    python -m bench.peers SMTP_PORT HTTP_PORT

an aiosmtpd SMTP server that accepts every message, and an HTTP peer (webhook / CRM receiver)
answering 201 to every POST. `GET /received` on the HTTP port answers how many of each arrived,
and for the end-to-end run the arrival time (epoch seconds) of every message by its lead id."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Received:
    def __init__(self) -> None:
        self.smtp = 0
        self.http = 0
        self.arrivals: list[tuple[float, str]] = []

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.smtp += 1
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        self.arrivals.append((time.time(), rcpt.split("@", 1)[0]))
        return "250 OK"

    def app(self) -> Starlette:
        async def post(request: Request) -> Response:
            body = await request.body()
            self.http += 1
            self.arrivals.append((time.time(), str(len(body))))
            return JSONResponse({"id": f"peer-{self.http}"}, status_code=201)

        async def received(_: Request) -> Response:
            return JSONResponse({"smtp": self.smtp, "http": self.http,
                                 "arrivals": self.arrivals})

        return Starlette(routes=[Route("/received", received, methods=["GET"]),
                                 Route("/{path:path}", post, methods=["POST"])])


async def serve(smtp_port: int, http_port: int) -> None:
    received = Received()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(received, hostname="peer.bench"),
                                      "127.0.0.1", smtp_port)
    config = uvicorn.Config(received.app(), host="127.0.0.1", port=http_port,
                            log_level="warning", access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        server.close()


def main(argv: list[str]) -> int:
    asyncio.run(serve(int(argv[0]), int(argv[1])))
    return 0


def counts(doc: dict[str, Any]) -> int:
    return int(doc["smtp"]) + int(doc["http"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
