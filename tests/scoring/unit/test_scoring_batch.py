"""The table as a batch sees it (`Pending`): reads see the batch's own writes, and each touched
lead reaches the table once, with its newest state, when the batch ends, under the event that
last touched it (faust's RocksDB store takes its partition from the current event)."""

from __future__ import annotations

from typing import Any

from services.scoring.adapters.faust_app import Pending


class Table(dict[bytes, bytes]):
    """A dict that counts the writes and deletes a faust table would send to its changelog,
    and keeps the event current at each (`as_event` sets it, as faust's stream does)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.changelog: list[tuple[bytes, bytes | None]] = []
        self.current: Any = None
        self.under: list[Any] = []

    def as_event(self, event: Any) -> None:
        self.current = event

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.changelog.append((key, value))
        self.under.append(self.current)
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.changelog.append((key, None))
        self.under.append(self.current)
        super().__delitem__(key)


def pending(table: Table) -> Pending:
    return Pending(table, as_event=table.as_event)


def test_reads_see_the_batchs_writes_before_the_table_does() -> None:
    table = Table({b"a": b"1"})
    batch = pending(table)
    assert batch.get(b"a") == b"1"
    batch.put(b"a", b"2", "e")
    batch.put(b"b", b"1", "e")
    assert (batch.get(b"a"), batch.get(b"b"), batch.get(b"c")) == (b"2", b"1", None)
    assert table == {b"a": b"1"} and table.changelog == []


def test_each_touched_lead_is_written_once_with_its_newest_state() -> None:
    table = Table()
    batch = pending(table)
    for n in range(5):
        batch.put(b"a", str(n).encode(), f"event {n}")
    batch.put(b"b", b"x", "event b")
    batch.write()
    assert table.changelog == [(b"a", b"4"), (b"b", b"x")]
    assert table.under == ["event 4", "event b"]  # each under the event that last touched it
    assert table.current is None  # and no event is left current after the batch
    batch.write()  # a batch that touched nothing writes nothing
    assert len(table.changelog) == 2


def test_an_erased_lead_is_deleted_once_and_reads_as_absent() -> None:
    table = Table({b"a": b"1"})
    batch = pending(table)
    batch.put(b"a", None, "e")
    batch.put(b"never-stored", None, "e")
    assert batch.get(b"a") is None
    batch.write()
    assert table == {} and table.changelog == [(b"a", None)]


def test_a_lead_erased_then_seen_again_in_one_batch_keeps_its_new_state() -> None:
    table = Table({b"a": b"old"})
    batch = pending(table)
    batch.put(b"a", None, "e")
    batch.put(b"a", b"new", "e")
    batch.write()
    assert table == {b"a": b"new"} and table.changelog == [(b"a", b"new")]
