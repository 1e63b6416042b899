"""The table as a batch sees it (`Pending`): reads see the batch's own writes, and each touched
lead reaches the store once, with its newest state, when the batch ends, under the event that
last touched it (faust's RocksDB store takes its partition from the current event), and its
changelog record goes out for that event's partition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from services.scoring.adapters.faust_app import Pending
from services.scoring.domain.state import LeadState
from services.scoring.service_layer.handlers import Result

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

    def add(self, topic: str, key: bytes | None, value: bytes | None,
            headers: Any = (), *, partition: int | None = None) -> None:
        self.sent.append((topic, key, value, partition))


def pending(store: Store, cache_leads: int = 0) -> tuple[Pending, Records]:
    records = Records()
    return Pending(store, store.as_event, records, CHANGELOG,  # type: ignore[arg-type]
                   cache_leads=cache_leads), records


def stored(state: bytes, lead: LeadState | None = None) -> Result:
    """A result that stores `state` (`lead`: the object it encodes)."""
    return Result("scored", "web.page_viewed", state, [], lead=lead)


def lead_at(last_time: float) -> LeadState:
    lead = LeadState()
    lead.last_time = last_time
    return lead


def erased() -> Result:
    return Result("erased", "lead.erased", None, [], erase=True)


def changelog(records: Records) -> list[tuple[bytes | None, bytes | None]]:
    assert {topic for topic, *_ in records.sent} <= {CHANGELOG}
    return [(key, value) for _, key, value, _ in records.sent]


def test_reads_see_the_batchs_writes_before_the_table_does() -> None:
    table = Store({b"a": b"1"})
    batch, records = pending(table)
    assert batch.get(b"a") == b"1"
    batch.put(b"a", stored(b"2"), Event("e"))
    batch.put(b"b", stored(b"1"), Event("e"))
    assert (batch.get(b"a"), batch.get(b"b"), batch.get(b"c")) == (b"2", b"1", None)
    assert table == {b"a": b"1"} and changelog(records) == []


def test_each_touched_lead_is_written_once_with_its_newest_state() -> None:
    table = Store()
    batch, records = pending(table)
    for n in range(5):
        batch.put(b"a", stored(str(n).encode()), Event(f"event {n}"))
    batch.put(b"b", stored(b"x"), Event("event b"))
    batch.write()
    assert changelog(records) == [(b"a", b"4"), (b"b", b"x")]
    assert table.under == ["event 4", "event b"]  # each under the event that last touched it
    assert table.current is None  # and no event is left current after the batch
    batch.write()  # a batch that touched nothing writes nothing
    assert len(changelog(records)) == 2


def test_an_erased_lead_is_deleted_once_and_reads_as_absent() -> None:
    table = Store({b"a": b"1"})
    batch, records = pending(table)
    batch.put(b"a", erased(), Event("e"))
    batch.put(b"never-stored", erased(), Event("e"))
    assert batch.get(b"a") is None
    batch.write()
    assert table == {} and changelog(records) == [(b"a", None)]


def test_a_lead_erased_then_seen_again_in_one_batch_keeps_its_new_state() -> None:
    table = Store({b"a": b"old"})
    batch, records = pending(table)
    batch.put(b"a", erased(), Event("e"))
    batch.put(b"a", stored(b"new"), Event("e"))
    batch.write()
    assert table == {b"a": b"new"} and changelog(records) == [(b"a", b"new")]


def test_each_changelog_record_goes_to_the_partition_of_the_event_that_wrote_it() -> None:
    table = Store()
    batch, records = pending(table)
    batch.put(b"a", stored(b"1"), Event("e1", partition=2))
    batch.put(b"b", stored(b"1"), Event("e2", partition=0))
    batch.put(b"a", stored(b"2"), Event("e3", partition=2))
    batch.write()
    assert [(key, partition) for _, key, _, partition in records.sent] == [(b"a", 2), (b"b", 0)]


def test_only_the_changelogs_delivered_offsets_are_recorded_as_persisted() -> None:
    table = Store()
    batch, _ = pending(table)
    batch.persisted({TopicPartition(CHANGELOG, 1): 41, TopicPartition("scored", 1): 7})
    assert table.offsets == {TopicPartition(CHANGELOG, 1): 41}


def test_a_lead_written_last_is_read_back_decoded_while_the_table_holds_its_bytes() -> None:
    table = Store()
    batch, _ = pending(table, cache_leads=10)
    lead = lead_at(1.0)
    batch.put(b"a", stored(lead.to_bytes(), lead), Event("e"))
    assert batch.get(b"a") is lead  # within the batch
    batch.write()
    assert batch.get(b"a") is lead  # and after it, from the store
    table.as_event(Event("recovery"))
    table[b"a"] = lead_at(1.0).to_bytes()  # equal bytes (RocksDB reads copies)
    assert batch.get(b"a") is lead
    table[b"a"] = lead_at(2.0).to_bytes()  # the table moved on (a rebalance)
    assert batch.get(b"a") == table[b"a"]


def test_a_result_without_a_state_forgets_the_decoded_lead() -> None:
    table = Store()
    batch, _ = pending(table, cache_leads=10)
    lead = lead_at(1.0)
    batch.put(b"a", stored(lead.to_bytes(), lead), Event("e"))
    batch.put(b"a", Result("dead_lettered", "unknown", None, []), Event("e2"))
    assert batch.get(b"a") == lead.to_bytes()  # the bytes: the object may be half changed


def test_only_the_leads_written_last_are_kept_decoded() -> None:
    batch, _ = pending(Store(), cache_leads=2)
    leads = {key: lead_at(float(n)) for n, key in enumerate([b"a", b"b", b"c"])}
    for key, lead in leads.items():
        batch.put(key, stored(lead.to_bytes(), lead), Event("e"))
    assert [batch.get(key) is lead for key, lead in leads.items()] == [False, True, True]
    assert batch.get(b"a") == leads[b"a"].to_bytes()  # the dropped one: its bytes


def test_with_no_cache_every_read_gives_the_bytes() -> None:
    batch, _ = pending(Store(), cache_leads=0)
    lead = lead_at(1.0)
    batch.put(b"a", stored(lead.to_bytes(), lead), Event("e"))
    assert batch.get(b"a") == lead.to_bytes()
