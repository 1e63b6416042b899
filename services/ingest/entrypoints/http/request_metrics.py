"""Request metrics of the intake routes, as ASGI middleware: the duration by route and status of
every answer (refusals included, whichever dependency refused), and refusals by reason."""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi.routing import APIRouter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.metrics import REASONS, IngestMetrics


def routes_of(*routers: APIRouter) -> frozenset[tuple[str, str]]:
    """(method, path) of every route of `routers`."""
    found: set[tuple[str, str]] = set()
    for router in routers:
        for route in router.routes:
            methods: Iterable[str] = getattr(route, "methods", None) or ()
            found.update((method, getattr(route, "path", "")) for method in methods)
    return frozenset(found)


class RequestMetrics:
    """`app.add_middleware(RequestMetrics, metrics=..., routes=routes_of(router, ...))`."""

    def __init__(self, app: ASGIApp, *, metrics: IngestMetrics,
                 routes: frozenset[tuple[str, str]]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path", "")
        if scope["type"] != "http" or (scope.get("method", ""), route) not in self.routes:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watched)
        if status >= 400:
            self.metrics.rejected.labels(REASONS.get(status, "other")).inc()
        if status:
            self.metrics.requests.labels(route, str(status)).observe(
                time.perf_counter() - started)
