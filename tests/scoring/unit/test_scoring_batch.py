"""The table as a batch sees it (`Pending`): reads see the batch's own writes, and each touched
lead reaches the table once, with its newest state, when the batch ends."""

from __future__ import annotations

from typing import Any

from services.scoring.adapters.faust_app import Pending


class Table(dict[bytes, bytes]):
    """A dict that counts the writes and deletes a faust table would send to its changelog."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.changelog: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.changelog.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.changelog.append((key, None))
        super().__delitem__(key)


def test_reads_see_the_batchs_writes_before_the_table_does() -> None:
    table = Table({b"a": b"1"})
    pending = Pending(table)
    assert pending.get(b"a") == b"1"
    pending.put(b"a", b"2")
    pending.put(b"b", b"1")
    assert (pending.get(b"a"), pending.get(b"b"), pending.get(b"c")) == (b"2", b"1", None)
    assert table == {b"a": b"1"} and table.changelog == []


def test_each_touched_lead_is_written_once_with_its_newest_state() -> None:
    table = Table()
    pending = Pending(table)
    for n in range(5):
        pending.put(b"a", str(n).encode())
    pending.put(b"b", b"x")
    pending.write()
    assert table.changelog == [(b"a", b"4"), (b"b", b"x")]
    pending.write()  # a batch that touched nothing writes nothing
    assert len(table.changelog) == 2


def test_an_erased_lead_is_deleted_once_and_reads_as_absent() -> None:
    table = Table({b"a": b"1"})
    pending = Pending(table)
    pending.put(b"a", None)
    pending.put(b"never-stored", None)
    assert pending.get(b"a") is None
    pending.write()
    assert table == {} and table.changelog == [(b"a", None)]


def test_a_lead_erased_then_seen_again_in_one_batch_keeps_its_new_state() -> None:
    table = Table({b"a": b"old"})
    pending = Pending(table)
    pending.put(b"a", None)
    pending.put(b"a", b"new")
    pending.write()
    assert table == {b"a": b"new"} and table.changelog == [(b"a", b"new")]
