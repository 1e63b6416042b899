"""The ingest HTTP application: assembles the routers, the error handlers and the request
metrics around an `Ingest` built by `services.ingest.bootstrap`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.ingest.bootstrap import Ingest
from services.ingest.entrypoints.http import (
    browser,
    events,
    probes,
    provider_webhooks,
    segment,
    tracking_links,
)
from services.ingest.entrypoints.http.cors import Cors
from services.ingest.entrypoints.http.errors import add_error_handlers
from services.ingest.entrypoints.http.request_metrics import RequestMetrics, routes_of

DESCRIPTION = ("Send behavioral events (CloudEvents 1.0, or Segment-style batches) into "
               "Nurture. Every 2xx means Kafka has the events.")


def create_app(ingest: Ingest) -> FastAPI:
    """The app over `ingest`; its lifespan runs the publisher (`Ingest.running`)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with ingest.running():
            yield

    app = FastAPI(title="Nurture ingest", version="1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.handlers = ingest.handlers
    app.state.api_keys = ingest.api_keys
    app.state.registry = ingest.registry
    intake = (events.router, segment.router, browser.router, provider_webhooks.router)
    for router in intake:
        app.include_router(router)
    if ingest.tracking_on:
        app.include_router(tracking_links.router)
    app.include_router(probes.router)
    add_error_handlers(app)
    app.add_middleware(RequestMetrics, metrics=ingest.metrics, routes=routes_of(*intake))
    app.add_middleware(Cors, keys=lambda: ingest.api_keys.current)
    return app
