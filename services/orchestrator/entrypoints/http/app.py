"""The orchestrator's HTTP API (FastAPI): `create_app` assembles the routers and the middleware;
its lifespan runs the background workers (`entrypoints/consumer.py`) of the built
orchestrator (`bootstrap.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common.http.bodylimit import BodyLimit
from services.common.kafka.loops import finish
from services.orchestrator.bootstrap import Orchestrator
from services.orchestrator.entrypoints.consumer import run_workers
from services.orchestrator.entrypoints.http import admin, leads, probes, programs, sms
from services.orchestrator.entrypoints.http.dependencies import tokens

MAX_BODY_BYTES = 64 * 1024  # every route: refused before authentication reads anything


def create_app(orch: Orchestrator) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        app.state.workers = asyncio.create_task(run_workers(orch, stop)) \
            if orch.run_workers else None
        try:
            yield
        finally:
            stop.set()
            if app.state.workers is not None:
                await finish(app.state.workers, stop, orch.settings.shutdown_grace_seconds)
            await orch.close()

    app = FastAPI(title="Nurture orchestrator", version="1.0", lifespan=lifespan,
                  description="Leads, lifecycle stages, nurture programs and the funnel.")
    app.state.orch, app.state.tokens = orch, tokens(orch.settings)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    for module in (leads, programs, admin, sms, probes):
        # the routes themselves, not `include_router`: FastAPI >= 0.16x includes a router as
        # one lazy entry, and what lists `app.routes` (the auth matrix, the chart's probes)
        # expects the routes (no prefix or router-level dependency is lost: there is none)
        app.router.routes.extend(module.router.routes)
    return app
