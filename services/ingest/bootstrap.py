"""The composition root of ingest: the only place that builds the publisher, the API keys, the rate
limiter, the metrics and the handlers from the settings. Tests pass fakes as overrides
(`publisher=FakePublisher()`, `clock=ControllableClock(...)`, `registry=...`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.common.clock import Clock, SystemClock, following
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.common.observability.metrics import service_registry
from services.common.webhooks import secret_key
from services.ingest.adapters.key_file import KeyRing
from services.ingest.adapters.publisher import KafkaPublisher, Publisher
from services.ingest.domain.ratelimit import RateLimiter
from services.ingest.metrics import IngestMetrics
from services.ingest.service_layer.handlers import Handlers
from services.ingest.settings import IngestSettings


@dataclass(frozen=True)
class Ingest:
    """Everything the HTTP entrypoint needs: the handlers, the API keys its auth dependency
    checks, the registry /metrics serves, and the lifetime (`running`) of the publisher and of
    the key file's watch."""

    settings: IngestSettings
    handlers: Handlers
    api_keys: KeyRing
    metrics: IngestMetrics
    registry: CollectorRegistry
    kafka_publisher: KafkaPublisher | None  # None: an injected publisher, started by its owner

    @property
    def tracking_on(self) -> bool:
        return bool(self.handlers.tracking_keys)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Connect the Kafka publisher in the background (the server answers 503 / not-ready
        until it is connected) and flush and close it at the end; watch the key file."""
        async with contextlib.AsyncExitStack() as stack:
            if self.api_keys.path is not None:
                watch = asyncio.create_task(
                    self.api_keys.watch(self.settings.api_keys_reload_seconds))
                stack.callback(watch.cancel)
            if self.kafka_publisher is not None:
                self.kafka_publisher.start()
                stack.push_async_callback(self.kafka_publisher.close)
            await stack.enter_async_context(following(self.handlers.clock))
            yield


def bootstrap(settings: IngestSettings, kafka: KafkaSettings, *,
              publisher: Publisher | None = None, clock: Clock | None = None,
              registry: CollectorRegistry | None = None,
              tracking_keys: Sequence[bytes] | None = None) -> Ingest:
    """Build ingest. Without an injected `publisher`, a Kafka one (connected by `running`)."""
    topics = Topics(kafka.topic_prefix)
    kafka_publisher = None
    if publisher is None:
        publisher = kafka_publisher = KafkaPublisher(
            kafka, topic=topics.events, timeout=settings.produce_timeout_seconds)
    registry = registry or service_registry()
    metrics = IngestMetrics(registry)
    connected = publisher
    metrics.kafka_connected.set_function(lambda: float(connected.connected))
    email_secret = settings.email_webhook_secret
    handlers = Handlers(
        settings, publisher=publisher, clock=clock or SystemClock(), metrics=metrics,
        topics=topics,
        limiter=RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst),
        email_key=secret_key(email_secret.get_secret_value()) if email_secret is not None else None,
        tracking_keys=tracking_keys or ())
    keys = KeyRing(settings.api_keys, settings.api_keys_file)
    return Ingest(settings, handlers, keys, metrics, registry, kafka_publisher)
