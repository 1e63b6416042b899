"""Reading a topic for the operator commands: every partition, from a time or the beginning, up
to the end as it was at the start (so a command always terminates) or on and on with `follow`.
No consumer group: nothing is committed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import connection_options
from services.common.kafka.topics import partition_count


async def read_topic(kafka: KafkaSettings, topic: str, *, since: datetime | None = None,
                     follow: bool = False, client_id: str = "nurture-ops"
                     ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """The topic's records from `since` (or its beginning): up to its end at the start, or
    on and on with `follow`."""
    parts = [TopicPartition(topic, p) for p in range(await partition_count(kafka, topic))]
    consumer = AIOKafkaConsumer(**connection_options(kafka, client_id),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(parts)
        await _seek(consumer, parts, since)
        ends = await consumer.end_offsets(parts)
        while follow or [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=500)).items():
                for record in batch:
                    if follow or record.offset < ends[tp]:
                        yield record
    finally:
        await consumer.stop()


async def _seek(consumer: AIOKafkaConsumer, parts: Sequence[TopicPartition],
                since: datetime | None) -> None:
    if since is None:
        await consumer.seek_to_beginning(*parts)
        return
    found = await consumer.offsets_for_times(
        dict.fromkeys(parts, int(since.timestamp() * 1000)))
    for tp in parts:
        if found.get(tp) is None:  # nothing that recent: start at the end
            await consumer.seek_to_end(tp)
        else:
            consumer.seek(tp, found[tp].offset)
