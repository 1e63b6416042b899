"""`RecordBatches` on the real broker: every record lands once, in order, on the partition
Kafka's default partitioner gives its key (as aiokafka's own `send` places it), also when a
partition's records fill more than one batch; `delivered` reports each partition's last
offset, and a batch the broker refuses fails `delivered` instead of passing unnoticed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_admin, make_producer
from services.common.kafka.topics import Topics, create_topic
from services.scoring.adapters.record_batches import RecordBatches
from tests.support import isolated_kafka, read_topic


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def producer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    # small batches, so one partition's records of a round fill several
    producer = make_producer(kafka, client_id="record-batches", max_batch_size=2048)
    await producer.start()
    yield producer
    await producer.stop()


async def test_records_land_in_order_on_the_default_partitioners_partition(
        kafka: KafkaSettings, producer: AIOKafkaProducer) -> None:
    topic, reference = Topics(kafka.topic_prefix).scored_events, Topics(kafka.topic_prefix).events
    records = RecordBatches(producer)
    await records.learn(topic)
    sent = [(f"lead-{n % 17}".encode(), f"{n:04d}".encode() * 40) for n in range(300)]
    for key, value in sent:
        records.add(topic, key, value, [("n", value[:4])])
        await producer.send(reference, value, key=key)  # aiokafka's own choice, to compare
    records.add(topic, None, b"keyless")
    last = await records.delivered()
    await producer.flush()

    got = await read_topic(kafka.bootstrap_servers, topic, until=lambda rs: len(rs) >= 301)
    assert len(got) == 301
    keyless = [r for r in got if r.key is None]
    assert [(r.partition, r.value) for r in keyless] == [(0, b"keyless")]
    theirs = await read_topic(kafka.bootstrap_servers, reference, until=lambda rs: len(rs) >= 300)
    assert {r.key: r.partition for r in got if r.key} == {r.key: r.partition for r in theirs}
    for partition in {r.partition for r in got}:
        mine = sorted((r for r in got if r.partition == partition), key=lambda r: r.offset)
        expected = [v for k, v in sent if k in {r.key for r in mine}]
        if partition == 0:
            expected.append(b"keyless")
        assert [r.value for r in mine] == expected  # each partition's records in order
        assert last[TopicPartition(topic, partition)] == mine[-1].offset
        assert [h for r in mine if r.key for h in r.headers] == [
            ("n", r.value[:4]) for r in mine if r.key]
    assert await records.delivered() == {}  # nothing sent since


async def test_a_batch_the_broker_refuses_fails_delivered(kafka: KafkaSettings,
                                                         producer: AIOKafkaProducer) -> None:
    topic = f"{kafka.topic_prefix}tiny"
    admin = make_admin(kafka, client_id="record-batches")
    await admin.start()
    try:
        await create_topic(admin, NewTopic(name=topic, num_partitions=1, replication_factor=1,
                                           topic_configs={"max.message.bytes": "1000"}))
    finally:
        await admin.close()
    records = RecordBatches(producer)
    for n in range(4):
        records.add(topic, b"lead-1", bytes(400), [("n", str(n).encode())], partition=0)
    with pytest.raises(KafkaError):
        await records.delivered()
