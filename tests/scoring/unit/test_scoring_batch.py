"""The table as a batch sees it (`Pending`): reads see the batch's own writes, and each touched
lead reaches the store once, with its newest state, when the batch ends, under the event that
last touched it (faust's RocksDB store takes its partition from the current event), and its
changelog record goes out for that event's partition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from services.scoring.adapters.faust_app import Pending

CHANGELOG = "lead-state-changelog"


@dataclass(frozen=True)
class Message:
    partition: int


@dataclass(frozen=True)
class Event:
    name: str
    partition: int = 0

    @property
    def message(self) -> Message:
        return Message(self.partition)


class Store(dict[bytes, bytes]):
    """A dict that records the event current at each write and delete (`as_event` sets it, as
    faust's stream does), and the offsets it is told are persisted."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.current: Any = None
        self.under: list[str] = []
        self.offsets: dict[Any, int] = {}

    def as_event(self, event: Any) -> None:
        self.current = event

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.under.append(self.current.name)
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.under.append(self.current.name)
        super().__delitem__(key)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.offsets[tp] = offset


class Records:
    """Where the changelog records go (`RecordBatches` in the worker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    async def add(self, topic: str, key: bytes | None, value: bytes | None,
                  headers: Any = (), *, partition: int | None = None) -> None:
        self.sent.append((topic, key, value, partition))


def pending(store: Store) -> tuple[Pending, Records]:
    records = Records()
    return Pending(store, store.as_event, records, CHANGELOG), records  # type: ignore[arg-type]


def changelog(records: Records) -> list[tuple[bytes | None, bytes | None]]:
    assert {topic for topic, *_ in records.sent} <= {CHANGELOG}
    return [(key, value) for _, key, value, _ in records.sent]


def test_reads_see_the_batchs_writes_before_the_table_does() -> None:
    table = Store({b"a": b"1"})
    batch, records = pending(table)
    assert batch.get(b"a") == b"1"
    batch.put(b"a", b"2", Event("e"))
    batch.put(b"b", b"1", Event("e"))
    assert (batch.get(b"a"), batch.get(b"b"), batch.get(b"c")) == (b"2", b"1", None)
    assert table == {b"a": b"1"} and changelog(records) == []


def test_each_touched_lead_is_written_once_with_its_newest_state() -> None:
    table = Store()
    batch, records = pending(table)
    for n in range(5):
        batch.put(b"a", str(n).encode(), Event(f"event {n}"))
    batch.put(b"b", b"x", Event("event b"))
    asyncio.run(batch.write())
    assert changelog(records) == [(b"a", b"4"), (b"b", b"x")]
    assert table.under == ["event 4", "event b"]  # each under the event that last touched it
    assert table.current is None  # and no event is left current after the batch
    asyncio.run(batch.write())  # a batch that touched nothing writes nothing
    assert len(changelog(records)) == 2


def test_an_erased_lead_is_deleted_once_and_reads_as_absent() -> None:
    table = Store({b"a": b"1"})
    batch, records = pending(table)
    batch.put(b"a", None, Event("e"))
    batch.put(b"never-stored", None, Event("e"))
    assert batch.get(b"a") is None
    asyncio.run(batch.write())
    assert table == {} and changelog(records) == [(b"a", None)]


def test_a_lead_erased_then_seen_again_in_one_batch_keeps_its_new_state() -> None:
    table = Store({b"a": b"old"})
    batch, records = pending(table)
    batch.put(b"a", None, Event("e"))
    batch.put(b"a", b"new", Event("e"))
    asyncio.run(batch.write())
    assert table == {b"a": b"new"} and changelog(records) == [(b"a", b"new")]


def test_each_changelog_record_goes_to_the_partition_of_the_event_that_wrote_it() -> None:
    table = Store()
    batch, records = pending(table)
    batch.put(b"a", b"1", Event("e1", partition=2))
    batch.put(b"b", b"1", Event("e2", partition=0))
    batch.put(b"a", b"2", Event("e3", partition=2))
    asyncio.run(batch.write())
    assert [(key, partition) for _, key, _, partition in records.sent] == [(b"a", 2), (b"b", 0)]


def test_only_the_changelogs_delivered_offsets_are_recorded_as_persisted() -> None:
    table = Store()
    batch, _ = pending(table)
    batch.persisted({TopicPartition(CHANGELOG, 1): 41, TopicPartition("scored", 1): 7})
    assert table.offsets == {TopicPartition(CHANGELOG, 1): 41}
