"""HTTP plumbing every service's app shares: the Prometheus and readiness responses, and running
an app under uvicorn with our logging and a graceful-shutdown window."""

from __future__ import annotations

from types import FrameType
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.observability.metrics import exposition


def metrics_response(registry: CollectorRegistry) -> Response:
    body, ctype = exposition(registry)
    return Response(body, media_type=ctype)


async def readiness(engine: AsyncEngine, *, kafka_ready: bool) -> JSONResponse:
    """200 when the database answers and Kafka is connected; 503 saying which is not."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return JSONResponse({"detail": f"database unavailable: {type(exc).__name__}"}, 503)
    if not kafka_ready:
        return JSONResponse({"detail": "not connected to Kafka yet"}, 503)
    return JSONResponse({"status": "ready"})


def run_server(app: Any, *, host: str, port: int, grace_seconds: float,
               proxy_headers: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get `grace_seconds` to finish, then the
    lifespan stops the consumers (offsets committed, group left) and the process exits 0."""
    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal it handled once it has shut down, which ends the process
        # "killed by SIGTERM" (143); a drained, completed shutdown is a success: exit 0
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    Server(uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False,
        proxy_headers=proxy_headers, timeout_graceful_shutdown=int(grace_seconds))).run()
