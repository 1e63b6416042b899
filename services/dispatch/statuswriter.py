"""Recording `sending` and `sent` for the messages a channel loop has in flight, in shared
transactions (group commit, groupcommit.py): while one write runs, the starts and successes
that arrive meanwhile are collected and go out together in the next one. Each message keeps its
own protocol: its `sending` is committed when its provider call reaches the hand-off point
(`Handover`, adapters/handoff.py) and before it goes past it, and its `sent` (with
the `message.sent` event in the outbox) is committed as soon as a write is free after the call
returned, so the crash window is not wider than with a transaction per step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import Clock
from services.common.db.outbox import Outgoing
from services.dispatch.adapters import repository as repo
from services.dispatch.domain.command import SendMessage
from services.dispatch.domain.errors import HandoffRefused
from services.dispatch.domain.outcomes import Result
from services.dispatch.groupcommit import GroupCommit


@dataclass(frozen=True, slots=True)
class Sent:
    """A provider call that succeeded, to be recorded as `sent`."""

    message_id: str
    cmd: SendMessage
    attempt: int
    provider_id: str | None


@dataclass(frozen=True, slots=True)
class Start:
    """A claimed delivery to mark `sending`, under the claim's lease (its fencing token)."""

    message_id: str
    lease: datetime


@dataclass(slots=True)
class Handover:
    """One attempt's hand-off (a `Handoff` for the provider): the first time it is awaited it
    marks the delivery `sending` (committed) and keeps the attempt number; raises
    HandoffRefused when the delivery is no longer pending under this attempt's claim, so
    nothing is sent."""

    writer: StatusWriter
    claim: Start
    attempt: int | None = None

    async def __call__(self) -> None:
        if self.attempt is not None:  # a provider may reach its hand-off point only once
            return
        self.attempt = await self.writer.start(self.claim)
        if self.attempt is None:
            raise HandoffRefused(self.claim.message_id)


Op = Start | Sent


class StatusWriter:
    def __init__(self, engine: AsyncEngine, clock: Clock,
                 event: Callable[[SendMessage, Result, datetime], Outgoing], *,
                 writers: int = 2) -> None:
        self._engine, self._clock, self._event = engine, clock, event
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
        async with self._engine.begin() as conn:
            if successes:
                await repo.finish_sent(
                    conn, sent={s.message_id: s.provider_id for s in successes}, now=now)
                await repo.enqueue(conn, records=[self._event(s.cmd, Result(
                    "sent", s.attempt, provider_message_id=s.provider_id), now)
                    for s in successes], now=now)
            if starts:
                started = await repo.start_attempts(conn, claims=starts, now=now)
        return [started.get(op.message_id) if isinstance(op, Start) else now for op in ops]
