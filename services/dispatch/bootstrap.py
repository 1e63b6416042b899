"""Dispatch, composed: `bootstrap` is the only place that builds the engine, the HTTP client,
the providers (SMTP, SMS, CRM, webhook), the composer, the unit-of-work factory, the status
writer, the handlers and (when `serve` runs, inside the event loop) the Kafka clients. Tests pass
fakes as overrides (`channels`, `clock`, `registry`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import Clock, SystemClock, following
from services.common.config.settings import KafkaSettings
from services.common.db.engine import make_engine
from services.common.db.retention import Pruner
from services.common.kafka.clients import make_consumer, make_relay_producer
from services.common.kafka.topics import Topics
from services.common.observability.metrics import service_registry
from services.common.tracking import TrackingSettings
from services.dispatch.adapters import retention
from services.dispatch.adapters.channels import Channels, Composer, message_id_domain
from services.dispatch.adapters.crm import HttpTaskApi
from services.dispatch.adapters.sms import TwilioConfig, TwilioSms
from services.dispatch.adapters.smtp import SmtpConfig, SmtpMailer
from services.dispatch.adapters.status_writer import StatusWriter
from services.dispatch.adapters.templates import TemplateStore
from services.dispatch.adapters.unit_of_work import PostgresUnitOfWork
from services.dispatch.adapters.webhook import HttpWebhookSender
from services.dispatch.domain.email import Sender
from services.dispatch.domain.retry import RetryPolicy
from services.dispatch.entrypoints.consumer import serve
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.service_layer.handlers import Handlers
from services.dispatch.settings import DispatchSettings

log = logging.getLogger(__name__)
CLIENT_ID = "nurture-dispatch"


@dataclass
class KafkaClients:
    """The commands consumer, the events consumer (None: suppressions not followed), the
    producer of the outbox relay, and the commands consumer's group."""

    commands: Any
    events: Any | None
    producer: Any
    group: str


@dataclass
class Service:
    """The composed service: what `serve` runs and the HTTP app reads."""

    settings: DispatchSettings
    engine: AsyncEngine
    http: httpx.AsyncClient
    channels: Channels
    handlers: Handlers
    metrics: DispatchMetrics
    registry: CollectorRegistry
    outbox_ready: asyncio.Event
    clock: Clock
    pruner: Pruner
    connect: Callable[[], KafkaClients]  # builds the Kafka clients (needs a running loop)
    kafka_ready: bool = False
    workers_failed: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and deliver until `stop` (`kafka_ready` once connected), on the shared
        clock if one is configured."""
        async with following(self.clock):
            await serve(self, stop, self._ready)

    def _ready(self) -> None:
        self.kafka_ready = True

    async def aclose(self) -> None:
        if self.channels.mailer is not None:
            await self.channels.mailer.close()
        await self.http.aclose()
        await self.engine.dispose()


def bootstrap(settings: DispatchSettings, kafka: KafkaSettings, tracking: TrackingSettings, *,
              registry: CollectorRegistry | None = None, clock: Clock | None = None,
              channels: Channels | None = None) -> Service:
    """The service (nothing connects yet); the caller runs it and then `aclose`s it."""
    clock = clock or SystemClock()
    registry = registry or service_registry()
    metrics = DispatchMetrics(registry)
    engine = make_engine(settings.database_url, schema=settings.db_schema)
    http = httpx.AsyncClient(timeout=settings.http_timeout_seconds)
    channels = channels or build_channels(settings, http)
    outbox_ready = asyncio.Event()
    uow = functools.partial(PostgresUnitOfWork, engine, outbox_ready, clock)
    handlers = Handlers(
        uow, StatusWriter(uow, clock), build_composer(settings, tracking_key(tracking)),
        channels, Topics(kafka.topic_prefix), metrics,
        policy=RetryPolicy(settings.max_attempts, settings.retry_base_seconds,
                           settings.retry_max_seconds),
        clock=clock, resend_unconfirmed=settings.resend_unconfirmed,
        batch_size=settings.batch_size, lease=timedelta(seconds=settings.lease_seconds),
        sending_timeout=timedelta(seconds=settings.sending_timeout_seconds),
        concurrency=settings.concurrency,
        email_concurrency=min(settings.concurrency, settings.smtp_connections))
    pruner = Pruner(engine, retention.RULES, timedelta(days=settings.retention_days),
                    metrics.pruned, dedupes="nurture.dispatch.v1")
    return Service(settings, engine, http, channels, handlers, metrics, registry, outbox_ready,
                   clock, pruner, functools.partial(kafka_clients, settings, kafka))


def kafka_clients(settings: DispatchSettings, kafka: KafkaSettings) -> KafkaClients:
    topics = Topics(kafka.topic_prefix)
    group = f"{kafka.topic_prefix}{settings.group_id}"
    commands = make_consumer(kafka, topics.dispatch, client_id=CLIENT_ID, group_id=group)
    events = make_consumer(kafka, topics.events, client_id=CLIENT_ID,
                           group_id=f"{group}-suppressions") \
        if settings.follow_suppressions else None
    return KafkaClients(commands, events, make_relay_producer(kafka, client_id=CLIENT_ID), group)


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
                    settings.site_url, settings.crm_default_owner)
