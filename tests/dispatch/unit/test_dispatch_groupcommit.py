"""Group commit: callers that submit while a write runs share the next write; each gets its own
result; a failed write fails exactly the callers of that batch; nobody waits for a batch to
fill."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.dispatch.adapters.status_writer import GroupCommit


class Writer:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail: set[int] = set()
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = asyncio.Event()

    async def write(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.writing.set()
        await self.gate.wait()
        if self.fail & set(items):
            raise RuntimeError("database down")
        return [item * 10 for item in items]


async def test_a_lone_item_is_written_at_once() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer.write)
    assert await commit.submit(1) == 10
    assert await commit.submit(2) == 20
    assert writer.batches == [[1], [2]]


async def test_items_submitted_during_a_write_share_the_next_one() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer.write)
    writer.gate.clear()
    first = asyncio.create_task(commit.submit(0))
    await writer.writing.wait()  # the drain task is writing [0], held at the gate
    rest = [asyncio.create_task(commit.submit(n)) for n in range(1, 6)]
    await asyncio.sleep(0)  # let them submit
    writer.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 10, 20, 30, 40, 50]
    assert writer.batches == [[0], [1, 2, 3, 4, 5]]


async def test_a_failed_write_fails_only_its_own_batch() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer.write)
    writer.fail = {2}
    writer.gate.clear()
    first = asyncio.create_task(commit.submit(1))
    await writer.writing.wait()
    failing = [asyncio.create_task(commit.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)  # let them submit
    writer.gate.set()
    assert await first == 10
    for task in failing:
        with pytest.raises(RuntimeError, match="database down"):
            await task
    writer.fail = set()
    assert await commit.submit(4) == 40


async def test_a_second_writer_runs_while_the_first_is_held_and_batches_are_not_split() -> None:
    writer = Writer()
    commit: GroupCommit[int, int] = GroupCommit(writer.write, writers=2)
    writer.gate.clear()
    first = asyncio.create_task(commit.submit(0))
    await writer.writing.wait()
    writer.writing.clear()
    second = asyncio.create_task(commit.submit(1))
    await writer.writing.wait()  # a second write started although the first is not done
    rest = [asyncio.create_task(commit.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)  # let them submit: both writers are busy, so they wait together
    writer.gate.set()
    assert await asyncio.gather(first, second, *rest) == [0, 10, 20, 30]
    assert writer.batches == [[0], [1], [2, 3]]
