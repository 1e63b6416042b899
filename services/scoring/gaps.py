"""Records faust skipped: a guard that re-reads them so that no input event goes unscored.

faust-streaming 0.15 drops a record fetched under an older consumer-group generation during a
rebalance ("Skipping message ... with generation_id") and still acks its offset, so the offset
is committed although the agent never saw the record (seen here after a kill -9 and restart:
the first record of the second generation vanished, offsets committed past it). The agent sees
every other record with its offset, so a skipped one shows up as a gap: the first record of a
generation past the group's committed offset, or a record past the one after the previous.
The guard reads the gap's records with a plain consumer and the agent scores them first; if
faust delivered them after all, the per-lead dedupe window makes the second pass a no-op."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.common.kafka import connection_options, make_admin
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)
READ_TIMEOUT_SECONDS = 60.0


def gap(expected: int, offset: int) -> range:
    """Offsets skipped before `offset` when the next expected offset is `expected`."""
    if offset <= expected:
        return range(0)
    return range(expected, offset)


class GapGuard:
    """Tracks the next expected offset per input partition within one group generation."""

    def __init__(self, kafka: KafkaSettings, group_id: str) -> None:
        self.kafka, self.group_id = kafka, group_id
        self.generation: int | None = None
        self.expected: dict[TopicPartition, int] = {}
        self._reader: AIOKafkaConsumer | None = None

    async def missing(self, tp: TopicPartition, offset: int,
                      generation: int) -> list[ConsumerRecord[Any, Any]]:
        """The records of `tp` before `offset` that the agent should have seen and did not."""
        if generation != self.generation:  # a rebalance: faust re-seeked to committed offsets
            self.generation, self.expected = generation, {}
        expected = self.expected.get(tp)
        if expected is None:  # the group's position; for a group that never committed, the start
            expected = await self._committed(tp)
            if expected is None:
                expected = (await (await self._consumer()).beginning_offsets([tp]))[tp]
        self.expected[tp] = max(expected, offset + 1)
        skipped = gap(expected, offset)
        if not skipped:
            return []
        log.warning("re-reading records the stream skipped", extra={
            "topic": tp.topic, "partition": tp.partition,
            "from_offset": skipped.start, "to_offset": skipped.stop - 1})
        return await self._read(tp, skipped)

    async def _committed(self, tp: TopicPartition) -> int | None:
        admin = make_admin(self.kafka, client_id="nurture-scoring-gaps")
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group_id, partitions=[tp])
        finally:
            await admin.close()
        meta = offsets.get(tp)
        return meta.offset if meta is not None and meta.offset >= 0 else None

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                **connection_options(self.kafka, "nurture-scoring-gaps"),
                enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed")
            await self._reader.start()
        return self._reader

    async def _read(self, tp: TopicPartition, offsets: range) -> list[ConsumerRecord[Any, Any]]:
        reader = await self._consumer()
        reader.assign([tp])
        reader.seek(tp, offsets.start)
        records: list[ConsumerRecord[Any, Any]] = []
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            batch = await reader.getmany(tp, timeout_ms=500)
            records += [r for r in batch.get(tp, []) if r.offset < offsets.stop]
            if await reader.position(tp) >= offsets.stop:
                return records
        raise RuntimeError(f"could not re-read {tp.topic}[{tp.partition}] "
                           f"offsets {offsets.start}..{offsets.stop - 1}")

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
