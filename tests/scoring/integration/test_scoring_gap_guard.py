"""GapGuard against a real broker: it re-reads exactly the records a stream skipped, starting
where the stream truly was (its own handled group, else the group's offsets as found at
start-up, else the partition's start), whatever faust committed in the meantime."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_consumer
from services.common.kafka.topics import Topics
from services.scoring.adapters.faust_app import GapGuard, committed, handled_group
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


async def commit(kafka: KafkaSettings, group: str, tp: TopicPartition, offset: int) -> None:
    """What faust does when it acks records (the skipped ones included)."""
    consumer = make_consumer(kafka, group_id=group, client_id="t")
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await consumer.stop()


async def test_a_commit_past_a_skipped_record_does_not_hide_the_gap(
        kafka: KafkaSettings, ten_records: TopicPartition) -> None:
    group = unique("g")
    await commit(kafka, group, ten_records, 3)
    at_startup = await committed(kafka, group)
    assert at_startup == {ten_records: 3}
    # faust skipped r3..r5, acked them and committed 6 before the agent's first record (r6)
    await commit(kafka, group, ten_records, 6)
    guard = GapGuard(kafka, group, at_startup)
    try:
        missing = await guard.missing(ten_records, 6, generation=1)
        assert [r.value for r in missing] == [b"r3", b"r4", b"r5"]
        guard.handled(ten_records, 6)
        assert await guard.missing(ten_records, 7, generation=1) == []  # the next one
        guard.handled(ten_records, 7)
        missing = await guard.missing(ten_records, 9, generation=1)  # 8 skipped mid-stream
        assert [r.offset for r in missing] == [8]
    finally:
        await guard.stop()


async def test_a_record_whose_handling_failed_comes_back_with_the_next_one(
        kafka: KafkaSettings, ten_records: TopicPartition) -> None:
    """faust acks a record whose agent raised; the guard moves on only when told it was
    handled, so the failed record (and the gap before it) is read again."""
    guard = GapGuard(kafka, unique("g"), {ten_records: 3})
    try:
        assert [r.offset for r in await guard.missing(ten_records, 5, generation=1)] == [3, 4]
        # handling r3, r4 or r5 raised: no `handled`
        missing = await guard.missing(ten_records, 6, generation=1)
        assert [r.offset for r in missing] == [3, 4, 5]
    finally:
        await guard.stop()


async def test_a_group_that_never_committed_starts_at_the_partition_start(
        kafka: KafkaSettings, ten_records: TopicPartition) -> None:
    guard = GapGuard(kafka, unique("g"), {})
    try:
        missing = await guard.missing(ten_records, 2, generation=5)
        assert [r.offset for r in missing] == [0, 1]
        guard.handled(ten_records, 0)
        # a new generation (faust re-seeked) starts past what this process handled
        assert [r.offset for r in await guard.missing(ten_records, 3, generation=6)] == [1, 2]
    finally:
        await guard.stop()


async def test_the_handled_group_tells_a_restarted_worker_where_the_last_one_truly_was(
        kafka: KafkaSettings, ten_records: TopicPartition) -> None:
    group = unique("g")
    first = GapGuard(kafka, group, {})
    try:
        for offset in range(5):
            first.handled(ten_records, offset)
        # faust committed 8: it acked r5..r7 without the agent seeing them (not yet noticed)
        await first.record({ten_records: 8}, [ten_records])
        assert await committed(kafka, handled_group(group)) == {ten_records: 5}
        await first.record({ten_records: 8}, [ten_records])  # nothing new: no second commit
        first.handled(ten_records, 5)
        await first.record({ten_records: 4}, [ten_records])  # never moves back
        assert await committed(kafka, handled_group(group)) == {ten_records: 5}
    finally:
        await first.stop()
    restarted = GapGuard(kafka, group, {ten_records: 8})  # what faust committed, as found
    try:
        missing = await restarted.missing(ten_records, 8, generation=1)
        assert [r.offset for r in missing] == [5, 6, 7]
        # its faust's committed offset is stale (an earlier generation's): nothing recorded
        # below what the handled group already holds
        restarted.handled(ten_records, 8)
        await restarted.record({ten_records: 2}, [ten_records])
        assert await committed(kafka, handled_group(group)) == {ten_records: 5}
        await restarted.record({ten_records: 9}, [ten_records])
        assert await committed(kafka, handled_group(group)) == {ten_records: 9}
    finally:
        await restarted.stop()
