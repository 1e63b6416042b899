"""Recording `sending` and `sent` for the messages a channel loop has in flight, in shared
transactions (group commit, adapters/group_commit.py): while one write runs, the starts and
successes that arrive meanwhile are collected and go out together in the next one. Each message
keeps its own protocol: its `sending` is committed when its provider call reaches the hand-off
point (the handler's `Handover`, adapters/handoff.py) and before it goes past it, and its `sent`
(with the `message.sent` event in the outbox) is committed as soon as a write is free after the
call returned, so the crash window is not wider than with a transaction per step."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from services.common.clock import Clock
from services.dispatch.adapters.group_commit import GroupCommit
from services.dispatch.service_layer.unit_of_work import Sent, Start, UnitOfWorkFactory

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
