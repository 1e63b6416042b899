"""The dispatch process, composed: settings in, providers, templates and the Dispatcher built
once (`bootstrap`), the workers run in the lifespan of a small FastAPI app that serves
`/healthz`, `/readyz` and `/metrics`."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.clock import Clock, SystemClock
from services.common.config.settings import KafkaSettings
from services.common.http.server import metrics_response, readiness
from services.common.kafka.loops import finish
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.common.tracking import TrackingSettings
from services.dispatch.adapters.crm import HttpTaskApi
from services.dispatch.adapters.sms import TwilioConfig, TwilioSms
from services.dispatch.adapters.smtp import SmtpConfig, SmtpMailer
from services.dispatch.adapters.templates import TemplateStore
from services.dispatch.adapters.webhook import HttpWebhookSender
from services.dispatch.delivery import Channels, Composer, message_id_domain
from services.dispatch.domain.email import Sender
from services.dispatch.domain.retry import RetryPolicy
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.runtime import Dispatcher
from services.dispatch.settings import DispatchSettings
from services.dispatch.workers import run_workers

log = logging.getLogger(__name__)


def make_engine(settings: DispatchSettings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url, pool_size=10, pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": settings.db_schema}})


def tracking_key(tracking: TrackingSettings) -> bytes:
    """The signing key: `NURTURE_TRACKING_SECRET`, or (unset) a random one for this process,
    with a warning, since ingest cannot verify links signed with it."""
    keys = tracking.keys()
    if keys:
        return keys[0]
    log.warning("NURTURE_TRACKING_SECRET is not set: tracking links are signed with a random "
                "key of this process and will not verify at ingest; set the same secret for "
                "ingest and dispatch")
    return secrets.token_bytes(32)


def build_channels(settings: DispatchSettings, http: httpx.AsyncClient) -> Channels:
    """The providers the settings configure (email always; the others when set)."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    mailer = SmtpMailer(SmtpConfig(
        settings.smtp_host, settings.smtp_port, settings.smtp_security, settings.smtp_username,
        password, settings.smtp_timeout_seconds, settings.smtp_validate_certs,
        settings.smtp_ca_file), connections=settings.smtp_connections)
    sms = None
    if settings.sms_account_sid and settings.sms_auth_token and settings.sms_from:
        sms = TwilioSms(http, TwilioConfig(settings.sms_base_url, settings.sms_account_sid,
                                           settings.sms_auth_token.get_secret_value(),
                                           settings.sms_from))
    tasks = HttpTaskApi(http, url=settings.crm_url, token=settings.crm_token.get_secret_value()
                        if settings.crm_token else None) if settings.crm_url else None
    hooks = HttpWebhookSender(http, url=settings.webhook_url,
                              secret=settings.webhook_secret.get_secret_value()) \
        if settings.webhook_url and settings.webhook_secret else None
    return Channels(mailer, sms, tasks, hooks)


def build_composer(settings: DispatchSettings, key: bytes) -> Composer:
    sender = Sender(settings.from_address,
                    settings.message_id_domain or message_id_domain(settings.from_address),
                    settings.reply_to, settings.unsubscribe_mailto)
    return Composer(TemplateStore(Path(settings.templates)), sender, settings.tracking_base_url,
                    key, timedelta(days=settings.tracking_ttl_days),
                    timedelta(days=settings.unsubscribe_ttl_days), settings.track_opens,
                    settings.track_clicks, settings.brand, settings.sender_name,
                    settings.site_url)


def bootstrap(settings: DispatchSettings, kafka: KafkaSettings, key: bytes,
              metrics: DispatchMetrics, clock: Clock) -> tuple[Dispatcher, httpx.AsyncClient]:
    """The Dispatcher and the HTTP client its channels share (the caller closes both)."""
    http = httpx.AsyncClient(timeout=settings.http_timeout_seconds)
    dispatcher = Dispatcher(
        make_engine(settings), build_composer(settings, key), build_channels(settings, http),
        Topics(kafka.topic_prefix), metrics,
        policy=RetryPolicy(settings.max_attempts, settings.retry_base_seconds,
                           settings.retry_max_seconds),
        clock=clock, resend_unconfirmed=settings.resend_unconfirmed,
        batch_size=settings.batch_size,
        lease=timedelta(seconds=settings.lease_seconds),
        sending_timeout=timedelta(seconds=settings.sending_timeout_seconds),
        concurrency=settings.concurrency,
        email_concurrency=min(settings.concurrency, settings.smtp_connections))
    return dispatcher, http


def _report_crash(app: FastAPI, task: asyncio.Task[None]) -> None:
    """Workers that died fail /healthz (liveness), so Kubernetes restarts the process."""
    if not task.cancelled() and task.exception() is not None:
        app.state.kafka_ready, app.state.workers_failed = False, True
        log.error("dispatch workers stopped", exc_info=task.exception())


def create_app(settings: DispatchSettings, kafka: KafkaSettings, tracking: TrackingSettings, *,
               registry: CollectorRegistry | None = None, clock: Clock | None = None) -> FastAPI:
    registry = registry or new_registry()
    metrics = DispatchMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher, http = bootstrap(settings, kafka, tracking_key(tracking), metrics,
                                     clock or SystemClock())
        app.state.dispatcher, app.state.kafka_ready = dispatcher, False
        app.state.workers_failed = False
        stop = asyncio.Event()

        def ready() -> None:
            app.state.kafka_ready = True

        workers = asyncio.create_task(run_workers(dispatcher, settings, kafka, stop, ready))
        workers.add_done_callback(lambda task: _report_crash(app, task))
        try:
            yield
        finally:
            await finish(workers, stop, settings.shutdown_grace_seconds)
            if dispatcher.channels.mailer is not None:
                await dispatcher.channels.mailer.close()
            await http.aclose()
            await dispatcher.engine.dispose()

    app = FastAPI(title="Nurture dispatch", version="1.0", lifespan=lifespan,
                  description="Delivers email, SMS, CRM tasks and webhooks exactly once.")

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        if request.app.state.workers_failed:
            return JSONResponse({"detail": "the delivery workers stopped; see the log"}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        return await readiness(request.app.state.dispatcher.engine,
                               kafka_ready=request.app.state.kafka_ready)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return metrics_response(registry)

    return app
