"""The session's real broker and database answer, and topics are created explicitly."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_admin
from services.common.kafka.topics import SPECS, Topics, create_topic, ensure_topics
from tests.support import isolated_kafka, read_topic, unique


async def test_topics_round_trip_a_record(kafka_bootstrap: str) -> None:
    settings = await isolated_kafka(kafka_bootstrap)
    topics = Topics(settings.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topics.deadletter, b"v", key=b"k")
    finally:
        await producer.stop()
    records = await read_topic(kafka_bootstrap, topics.deadletter, until=lambda r: len(r) >= 1)
    assert [(r.key, r.value) for r in records] == [(b"k", b"v")]


async def test_ensure_topics_creates_every_topic_once(kafka_bootstrap: str) -> None:
    prefix = unique("idem") + "."
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap,
                             NURTURE_TOPIC_PREFIX=prefix)  # type: ignore[call-arg]
    created = await ensure_topics(settings, partitions=2)
    assert sorted(created) == sorted(prefix + spec.name for spec in SPECS)
    assert await ensure_topics(settings, partitions=2) == []


async def test_postgres_accepts_connections(database_url: str) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("select current_database()") == "nurture"
    finally:
        await conn.close()


async def test_create_topic_tells_created_from_existing_and_raises_the_broker_s_errors(
        kafka_bootstrap: str) -> None:
    """aiokafka returns per-topic errors in the response; `create_topic` reads them, so a topic
    that exists is never reported created (even when a topic list was behind) and a refused
    one is never silently skipped."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)  # type: ignore[call-arg]
    name = unique("create")
    admin = make_admin(settings, client_id="test")
    await admin.start()
    try:
        assert await create_topic(admin, NewTopic(name, 1, 1)) is True
        assert await create_topic(admin, NewTopic(name, 1, 1)) is False
        with pytest.raises(KafkaError, match="creating topic"):
            await create_topic(admin, NewTopic(unique("bad"), 1, 1,
                                               topic_configs={"retention.ms": "soon"}))
    finally:
        await admin.close()
