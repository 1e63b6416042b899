"""Kafka client factories with production defaults (aiokafka).

Producers are idempotent with acks=all and a short linger so concurrent sends batch together;
consumers never auto-commit (services commit after their effects are durable) and read only
committed records."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.common.config.settings import KafkaSettings


def connection_options(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        opts["sasl_mechanism"] = settings.sasl_mechanism
        opts["sasl_plain_username"] = settings.sasl_username
        opts["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(cafile=settings.ssl_cafile)
    return opts


MAX_BATCH_BYTES = 256 * 1024
"""A producer's record batch at most: a quarter of the broker's default `message.max.bytes`."""


def make_producer(settings: KafkaSettings, *, client_id: str, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer that batches: sends within `linger_ms` share a request."""
    opts = connection_options(settings, client_id) | {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": MAX_BATCH_BYTES,
        "request_timeout_ms": 30_000,
    }
    return AIOKafkaProducer(**(opts | overrides))


def make_relay_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """The producer of an outbox relay. A relay sends every row it claimed at once and then
    waits for all the acks, so a linger would only delay the round (about 5 ms a hop)."""
    return make_producer(settings, client_id=client_id, linger_ms=0)


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str, client_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A group consumer that commits manually, after the batch's effects are durable."""
    opts = connection_options(settings, client_id) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    return AIOKafkaConsumer(*topics, **(opts | overrides))


def make_admin(settings: KafkaSettings, *, client_id: str) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(settings, client_id))
