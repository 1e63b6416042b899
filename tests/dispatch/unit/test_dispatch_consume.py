"""The consumer loop commits offsets only after a batch is recorded, and reads a batch again
from the committed offsets when recording it failed (a database outage)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from services.common.kafka.loops import consume


@dataclass
class Consumer:
    """A one-partition consumer over a fixed list of records, tracking committed offsets."""

    records: list[str]
    stop: asyncio.Event
    position: int = 0
    committed: int = 0
    seeks: int = 0

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        if self.position >= len(self.records):
            self.stop.set()
            return {}
        batch = self.records[self.position:self.position + 2]
        self.position += len(batch)
        return {"p0": batch}

    async def seek_to_committed(self) -> None:
        self.seeks += 1
        self.position = self.committed

    async def commit(self) -> None:
        self.committed = self.position


@dataclass
class Recorder:
    """Records batches; the first `failures` calls fail like a database that is down."""

    failures: int
    recorded: list[list[str]] = field(default_factory=list)

    async def handle_batch(self, records: list[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        self.recorded.append(list(records))


async def test_a_failed_batch_is_read_again_and_committed_once_recorded() -> None:
    stop = asyncio.Event()
    consumer = Consumer(["a", "b", "c"], stop)
    recorder = Recorder(failures=1)
    await consume(recorder.handle_batch, consumer, stop, backoff=0)  # type: ignore[arg-type]
    assert recorder.recorded == [["a", "b"], ["c"]]
    assert (consumer.seeks, consumer.committed) == (1, 3)


async def test_nothing_is_committed_while_recording_fails() -> None:
    stop = asyncio.Event()
    consumer = Consumer(["a"], stop)
    recorder = Recorder(failures=3)
    calls: list[Any] = []

    async def watch() -> None:
        while recorder.failures:
            calls.append(consumer.committed)
            await asyncio.sleep(0)

    await asyncio.gather(consume(recorder.handle_batch, consumer, stop,  # type: ignore[arg-type]
                                 backoff=0),
                         watch())
    assert set(calls) == {0}
    assert (recorder.recorded, consumer.committed, consumer.seeks) == ([["a"]], 1, 3)
