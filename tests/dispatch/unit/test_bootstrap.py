"""bootstrap builds the service once, with the fakes a test passes, and connects to nothing
until it runs; the HTTP app only assembles its routers, which read the service through their
dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.common.clock import ControllableClock
from services.common.config.settings import KafkaSettings
from services.common.tracking import TrackingSettings
from services.dispatch.adapters.channels import Channels
from services.dispatch.adapters.smtp import FakeMailer
from services.dispatch.adapters.unit_of_work import PostgresUnitOfWork
from services.dispatch.bootstrap import Service, bootstrap
from services.dispatch.entrypoints.http.app import create_app
from services.dispatch.settings import DispatchSettings

SECRET = "unit-tracking-secret-0123456789abcdef"


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    settings = DispatchSettings(DATABASE_URL="postgresql+asyncpg://u@127.0.0.1:1/none")  # type: ignore[call-arg]
    built = bootstrap(settings, KafkaSettings(), TrackingSettings(secret=SECRET),  # type: ignore[arg-type]
                      channels=Channels(FakeMailer()), clock=ControllableClock())
    try:
        yield built
    finally:
        await built.aclose()


async def test_the_overrides_are_what_the_handlers_use(service: Service) -> None:
    assert service.handlers.channels == service.channels
    assert isinstance(service.channels.mailer, FakeMailer)
    assert service.handlers.clock is service.clock
    assert isinstance(service.handlers.uow(), PostgresUnitOfWork)
    assert (service.kafka_ready, service.workers_failed) == (False, False)


async def test_the_routes_read_the_service(service: Service) -> None:
    app = create_app(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://dispatch") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 503  # Kafka not connected
        metrics = await client.get("/metrics")
        service.workers_failed = True
        failed = await client.get("/healthz")
    assert "nurture_dispatch_messages_total" in metrics.text
    assert failed.status_code == 503
