"""GapGuard against a real broker: it re-reads exactly the records a stream skipped, starting
from the group's committed offset (or the partition's start for a group that never committed)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.common.kafka import make_consumer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.scoring.gaps import GapGuard
from tests.support import isolated_kafka, unique


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def ten_records(kafka: KafkaSettings) -> TopicPartition:
    topic = Topics(kafka.topic_prefix).events
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, f"r{n}".encode(), key=b"k", partition=1)
    finally:
        await producer.stop()
    return TopicPartition(topic, 1)


async def test_a_first_record_past_the_committed_offset_brings_back_the_gap(
        kafka: KafkaSettings, ten_records: TopicPartition) -> None:
    group = unique("g")
    consumer = make_consumer(kafka, group_id=group, client_id="t")
    await consumer.start()
    try:
        consumer.assign([ten_records])
        await consumer.commit({ten_records: OffsetAndMetadata(3, "")})
    finally:
        await consumer.stop()
    guard = GapGuard(kafka, group)
    try:
        missing = await guard.missing(ten_records, 6, generation=1)
        assert [r.value for r in missing] == [b"r3", b"r4", b"r5"]
        assert await guard.missing(ten_records, 7, generation=1) == []  # the next one
        missing = await guard.missing(ten_records, 9, generation=1)  # 8 skipped mid-stream
        assert [r.offset for r in missing] == [8]
    finally:
        await guard.stop()


async def test_a_group_that_never_committed_starts_at_the_partition_start(
        kafka: KafkaSettings, ten_records: TopicPartition) -> None:
    guard = GapGuard(kafka, unique("g"))
    try:
        missing = await guard.missing(ten_records, 2, generation=5)
        assert [r.offset for r in missing] == [0, 1]
        # a new generation asks the group again (faust re-seeked to the committed offsets)
        assert [r.offset for r in await guard.missing(ten_records, 1, generation=6)] == [0]
    finally:
        await guard.stop()
