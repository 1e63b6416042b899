"""Recording `sending` and `sent` for the messages a channel loop has in flight, in shared
transactions (group commit, below): while one write runs, the starts and successes that arrive
meanwhile are collected and go out together in the next one. Each message keeps its own
protocol: its `sending` is committed when its provider call reaches the hand-off
point (`Handover`, adapters/handoff.py) and before it goes past it, and its `sent`
(with the `message.sent` event in the outbox) is committed as soon as a write is free after the
call returned, so the crash window is not wider than with a transaction per step.

Group commit (`GroupCommit`): many concurrent callers, one transaction per batch. Each caller
`submit`s one item and waits for the write that includes it; a single drain task writes
everything submitted so far in one call, and what arrives meanwhile goes into the next write.
Nobody waits for a batch to fill, so an item is written at most one write later than it would
be on its own: recording `sending` / `sent` this way does not widen dispatch's crash window,
while N messages in flight cost one transaction instead of N."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar, cast

from services.common.clock import Clock
from services.dispatch.service_layer.unit_of_work import Sent, Start, UnitOfWorkFactory

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """`write(items)` returns one result per item, in order; an exception fails every caller
    of that batch. Up to `writers` writes run at once (each on its own connection), so one slow
    commit does not hold up everything behind it; items of one batch are never split."""

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *,
                 writers: int = 1) -> None:
        self._write = write
        self._writers = writers
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._drains: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if len(self._drains) < self._writers:
            self._drains.add(asyncio.create_task(self._drain_queue(), name="group-commit"))
        return await future

    async def _drain_queue(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as exc:  # handed to every caller waiting on this batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
                batch = []
        finally:
            # no await since the queue was last seen empty: a submit from now on starts a writer
            self._drains.discard(cast(asyncio.Task[None], asyncio.current_task()))
            for _, future in batch:  # cancelled (shutdown): nobody may wait forever
                future.cancel()
            if not self._drains:  # and no other writer will take what is queued
                for _, future in self._queue:
                    future.cancel()
                self._queue = []


Op = Start | Sent


class StatusWriter:
    """The `Statuses` of the handlers: up to `writers` units of work at once."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, *, writers: int = 2) -> None:
        self._uow, self._clock = uow, clock
        self._commit: GroupCommit[Op, int | datetime | None] = GroupCommit(
            self._write, writers=writers)

    async def start(self, claim: Start) -> int | None:
        """Mark a claimed delivery `sending` (committed); its attempt number, or None when it
        is no longer pending under that claim (see `repository.start_attempts`)."""
        return cast(int | None, await self._commit.submit(claim))

    async def sent(self, success: Sent) -> datetime:
        """Record `sent` and queue its `message.sent` event (committed); when."""
        return cast(datetime, await self._commit.submit(success))

    async def _write(self, ops: Sequence[Op]) -> list[int | datetime | None]:
        now = self._clock.now()
        starts = {op.message_id: op.lease for op in ops if isinstance(op, Start)}
        successes = [op for op in ops if isinstance(op, Sent)]
        started: dict[str, int] = {}
        async with self._uow() as uow:
            if successes:
                await uow.deliveries.finish_sent(
                    sent={s.message_id: s.provider_id for s in successes}, now=now)
                uow.publish(*(s.event for s in successes))
            if starts:
                started = await uow.deliveries.start_attempts(claims=starts, now=now)
        return [started.get(op.message_id) if isinstance(op, Start) else now for op in ops]
