"""Records produced a batch at a time: one record batch per topic partition, not one send per
record (faust_app, workaround 11).

aiokafka's `send` costs a future, a partitioner call and an accumulator lookup per record, and
faust's producer and table changelog wrap each in more futures and sensors (together about a
quarter of the scoring worker's CPU per event, docs/benchmarks.md). `RecordBatches` appends
each record to a `BatchBuilder` of its topic partition (`AIOKafkaProducer.create_batch`) and
hands each builder to the producer once (`send_batch`), closed, so it leaves without lingering.
`delivered` waits for every batch the broker has to acknowledge and raises if one failed, so a
caller acks its input only once its outputs are stored."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

Headers = Sequence[tuple[str, bytes]]


@functools.lru_cache(maxsize=65536)
def partition_for(key: bytes, count: int) -> int:
    """The partition (of `count`) the Kafka default partitioner picks for `key`: murmur2, as
    every producer of our topics partitions (the Java client's too)."""
    return int(DefaultPartitioner()(key, list(range(count)), None))


@dataclass
class _Open:
    builder: Any  # aiokafka's BatchBuilder
    records: int = 0


@dataclass
class RecordBatches:
    """Records gathered per topic partition until `send`; `delivered` then waits for them.
    One instance serves one caller at a time (the scoring agent, one batch after another)."""

    producer: AIOKafkaProducer
    open: dict[TopicPartition, _Open] = field(default_factory=dict)
    full: list[tuple[TopicPartition, _Open]] = field(default_factory=list)  # in order, to send
    sent: list[tuple[TopicPartition, int, asyncio.Future[Any]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # partitions per topic

    async def learn(self, *topics: str) -> None:
        """Ask the broker how many partitions each of `topics` has: `add` places a keyed
        record by it (once per topic: a topic's partitions must not change while we run)."""
        for topic in topics:
            if topic not in self.counts:
                self.counts[topic] = len(await self.producer.partitions_for(topic))

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            headers: Headers = (), *, partition: int | None = None) -> None:
        """Add one record, to leave with the next `send`; without `partition`, the default
        partitioner's choice from `key` among the topic's partitions (`learn`), and a record
        without a key goes to partition 0."""
        if partition is None:
            partition = 0 if key is None else partition_for(key, self.counts[topic])
        tp = TopicPartition(topic, partition)
        batch = self.open.get(tp)
        if batch is None:
            batch = self.open[tp] = _Open(self.producer.create_batch())
        if batch.builder.append(key=key, value=value, timestamp=None, headers=list(headers)):
            batch.records += 1
            return
        if not batch.records:
            raise ValueError(f"a record for {topic} of {len(value or b'')} bytes is larger than "
                             "the producer's batch size")
        self.full.append((tp, self.open.pop(tp)))  # full: it leaves first, the record
        self.add(topic, key, value, headers, partition=partition)  # starts the next one

    async def send(self) -> None:
        """Hand every batch to the producer, the partition's full ones first."""
        full, self.full = self.full, []
        for tp, batch in [*full, *self.open.items()]:
            batch.builder.close()  # a closed batch leaves without waiting for the linger time
            future = await self.producer.send_batch(batch.builder, tp.topic,
                                                    partition=tp.partition)
            self.sent.append((tp, batch.records, future))
        self.open.clear()

    async def delivered(self) -> dict[TopicPartition, int]:
        """Wait for every batch sent since the last call; the offset of the last record of each
        topic partition. Raises the first failure (nothing after it counts as delivered)."""
        await self.send()
        sent, self.sent = self.sent, []
        results = await asyncio.gather(*(future for _, _, future in sent),
                                       return_exceptions=True)
        last: dict[TopicPartition, int] = {}
        for (tp, records, _), metadata in zip(sent, results, strict=True):
            if isinstance(metadata, BaseException):
                raise metadata
            last[tp] = metadata.offset + records - 1
        return last
