"""The dispatch HTTP app: `/healthz`, `/readyz` (probes.py) and `/metrics` (metrics.py), with
the service's consumers and loops (entrypoints/consumer.py) running in its lifespan."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common.kafka.loops import finish
from services.dispatch.bootstrap import Service
from services.dispatch.entrypoints.http import metrics, probes

log = logging.getLogger(__name__)


def create_app(service: Service) -> FastAPI:
    """The app of a bootstrapped service (bootstrap.py)."""
    app = FastAPI(title="Nurture dispatch", version="1.0", lifespan=lifespan,
                  description="Delivers email, SMS, CRM tasks and webhooks exactly once.")
    app.state.service = service
    app.include_router(probes.router)
    app.include_router(metrics.router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The service runs while the app serves; on the way out it stops within its grace time
    and closes its clients."""
    service: Service = app.state.service
    stop = asyncio.Event()
    workers = asyncio.create_task(service.run(stop))
    workers.add_done_callback(functools.partial(_report_crash, service))
    try:
        yield
    finally:
        await finish(workers, stop, service.settings.shutdown_grace_seconds)
        await service.aclose()


def _report_crash(service: Service, task: asyncio.Task[None]) -> None:
    """Workers that died fail /healthz (liveness), so Kubernetes restarts the process."""
    if not task.cancelled() and task.exception() is not None:
        service.kafka_ready, service.workers_failed = False, True
        log.error("dispatch workers stopped", exc_info=task.exception())
