"""Records faust skipped: a guard that re-reads them so that no input event goes unscored.

faust-streaming 0.15 drops a record fetched under an older consumer-group generation (or while
its flow control is paused for a rebalance) and still acks its offset, so the offset can be
committed although the agent never saw the record (seen after a kill -9 and restart: the first
record of the new generation vanished, offsets committed past it). The agent sees every other
record with its offset, so a skipped one shows up as a gap: the first record of a generation past
where the stream should have started, or a record past the one after the previous. The guard
reads the gap's records with a plain consumer and the agent scores them first; if faust
delivered them after all, the per-lead dedupe window makes the second pass a no-op.

Where the stream should have started cannot be the group's committed offset read when the first
record arrives: faust may already have committed past the skipped record by then. So the guard
keeps its own account, which faust's acks cannot move:

- `done`: past every record this process handled, per partition;
- the *handled* group (`handled_group`): offsets committed by the guard itself, each the smaller
  of faust's committed offset (whose outputs were flushed before the commit) and `done` (what
  was really handled), so a restarted or rebalanced worker knows where the last one truly was;
- the group's committed offsets read at start-up, before this process's faust could commit
  anything: the answer before the handled group has one (the first run of this version).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import connection_options, make_admin, make_consumer

log = logging.getLogger(__name__)
READ_TIMEOUT_SECONDS = 60.0
REFRESH_SECONDS = 3600.0
CLIENT_ID = "nurture-scoring-gaps"


def handled_group(group_id: str) -> str:
    """The consumer group (never joined, only committed to) of the guard's own account."""
    return f"{group_id}-handled"


def gap(expected: int, offset: int) -> range:
    """Offsets skipped before `offset` when the next expected offset is `expected`."""
    if offset <= expected:
        return range(0)
    return range(expected, offset)


def start_offset(*, done: int | None, handled: int | None, at_startup: int | None) -> int | None:
    """Where a generation's stream should begin on a partition: past everything this process
    handled and past what the handled group vouches for; before the handled group has an
    offset, the group's committed offset as this process found it. None: nothing known (a
    group that never committed starts at the partition's beginning)."""
    vouched = handled if handled is not None else at_startup
    known = [offset for offset in (vouched, done) if offset is not None]
    return max(known) if known else None


def vouched(*, committed: int | None, done: int | None) -> int | None:
    """The handled group's offset: below it every record was handled (`done`) and its outputs
    flushed (faust flushes the producer before it commits `committed`)."""
    if committed is None or done is None:
        return None
    return min(committed, done)


def _tp(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class GapGuard:
    """Tracks the next expected offset per input partition within one group generation."""

    def __init__(self, kafka: KafkaSettings, group_id: str,
                 at_startup: Mapping[TopicPartition, int] | None = None) -> None:
        self.kafka, self.group_id = kafka, group_id
        self.at_startup = {_tp(tp): offset for tp, offset in (at_startup or {}).items()}
        self.generation: int | None = None
        self.expected: dict[TopicPartition, int] = {}
        self.done: dict[TopicPartition, int] = {}
        self.recorded: dict[TopicPartition, tuple[int, float]] = {}  # offset, when (monotonic)
        self._reader: AIOKafkaConsumer | None = None
        self._recorder: AIOKafkaConsumer | None = None

    async def missing(self, tp: Any, offset: int,
                      generation: int) -> list[ConsumerRecord[Any, Any]]:
        """The records of `tp` before `offset` that the agent should have seen and did not.
        Nothing moves on until `handled`: if handling them or the record fails, the next record
        shows the same gap again."""
        tp = _tp(tp)
        if generation != self.generation:  # a rebalance: faust re-seeked to committed offsets
            self.generation, self.expected = generation, {}
        expected = self.expected.get(tp)
        if expected is None:
            expected = self.expected[tp] = await self._start(tp)
        skipped = gap(expected, offset)
        if not skipped:
            return []
        log.warning("re-reading records the stream skipped", extra={
            "topic": tp.topic, "partition": tp.partition,
            "from_offset": skipped.start, "to_offset": skipped.stop - 1})
        return await self._read(tp, skipped)

    async def _start(self, tp: TopicPartition) -> int:
        handled = (await committed(self.kafka, handled_group(self.group_id), [tp])).get(tp)
        if handled is not None and handled > self.recorded.get(tp, (-1, 0.0))[0]:
            self.recorded[tp] = (handled, time.monotonic())  # never record below it
        start = start_offset(done=self.done.get(tp), handled=handled,
                             at_startup=self.at_startup.get(tp))
        if start is None:
            start = (await (await self._consumer()).beginning_offsets([tp]))[tp]
        return start

    def handled(self, tp: Any, offset: int) -> None:
        """The agent handled the record at `offset` (its outputs are with the producer), and
        the gap before it."""
        tp = _tp(tp)
        self.expected[tp] = max(self.expected.get(tp, 0), offset + 1)
        self.done[tp] = max(self.done.get(tp, 0), offset + 1)

    async def record(self, committed_offsets: Mapping[Any, int], assigned: Collection[Any]) -> None:
        """Commit to the handled group what it can vouch for on the `assigned` partitions, given
        faust's `committed_offsets`; called periodically. An unchanged offset is committed again
        every `REFRESH_SECONDS`: the broker forgets a memberless group's offsets some days
        (`offsets.retention.minutes`) after their last commit. A failure is logged and retried
        on the next call (the handled group lagging only means re-reading a few more records)."""
        now = time.monotonic()
        offsets: dict[TopicPartition, int] = {}
        for tp in map(_tp, assigned):
            offset = vouched(committed=committed_offsets.get(tp), done=self.done.get(tp))
            last, at = self.recorded.get(tp, (-1, 0.0))
            if offset is not None and offset > last:
                offsets[tp] = offset
            elif last >= 0 and now - at >= REFRESH_SECONDS:
                offsets[tp] = last
        if not offsets:
            return
        try:
            recorder = await self._recorder_for(offsets)
            await recorder.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as exc:
            log.warning("could not record the handled offsets", extra={"error": repr(exc)})
            return
        self.recorded.update((tp, (o, now)) for tp, o in offsets.items())

    async def _recorder_for(self, offsets: Mapping[TopicPartition, int]) -> AIOKafkaConsumer:
        """A consumer of the handled group that fetches nothing: assigned (aiokafka commits only
        for assigned partitions) and paused."""
        if self._recorder is None:
            self._recorder = await _started(make_consumer(
                self.kafka, group_id=handled_group(self.group_id), client_id=CLIENT_ID))
        wanted = set(offsets) | self._recorder.assignment()
        if wanted != self._recorder.assignment():
            self._recorder.assign(sorted(wanted))
            self._recorder.pause(*wanted)
        return self._recorder

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = await _started(AIOKafkaConsumer(
                **connection_options(self.kafka, CLIENT_ID),
                enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed"))
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
        for consumer in (self._reader, self._recorder):
            if consumer is not None:
                await consumer.stop()
        self._reader = self._recorder = None


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError) and exc.retriable


async def _started(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """`consumer`, started; closed again if it could not start (so the next call retries)."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def committed(kafka: KafkaSettings, group_id: str,
                    partitions: list[TopicPartition] | None = None,
                    ) -> dict[TopicPartition, int]:
    """The group's committed offsets (of `partitions`, else all it has), without joining it.
    Waits (with backoff, logging why) while the broker has no coordinator for the group yet, as
    on a fresh cluster whose offsets topic is still being created."""
    retrying = AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=5), retry=retry_if_exception(_retriable),
        before_sleep=lambda state: log.warning(
            "waiting for the group coordinator", extra={
                "group": group_id, "attempt": state.attempt_number,
                "reason": repr(state.outcome.exception()) if state.outcome else ""}))
    async for attempt in retrying:
        with attempt:
            admin = make_admin(kafka, client_id=CLIENT_ID)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(group_id,
                                                                  partitions=partitions)
            finally:
                await admin.close()
            return {_tp(tp): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    raise AssertionError("unreachable")  # pragma: no cover
