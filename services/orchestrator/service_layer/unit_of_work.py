"""The unit of work: one transaction around a use case. `async with uow:` begins it; leaving the
block normally writes what was published and commits, an exception rolls everything back. After
a commit that wrote outbox rows, the unit of work wakes the outbox relay itself (nobody else
does). The repositories below are only usable inside the block.

Implementations: `adapters/unit_of_work.py` (PostgreSQL) and `adapters/memory.py` (in memory,
for unit tests); `tests/orchestrator/contract/` runs the same tests against both."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from services.common.db.outbox import Outgoing
from services.orchestrator.domain.effects import Effects, Timer
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.ranking import Cursor


@dataclass(frozen=True, slots=True)
class DueTimer:
    id: int
    lead_id: str
    timer: Timer


class Leads(Protocol):
    """The lead documents, with what their decisions asked for (history, timers, message log,
    dispatch commands and stage changes for the outbox)."""

    async def lock(self, lead_ids: Iterable[str]) -> dict[str, Lead]:
        """Load and lock these leads until the end of the unit of work (missing ones are left
        out, and still locked: two creators of one new lead wait for each other)."""

    async def get(self, lead_id: str) -> Lead | None: ...

    async def with_phone(self, phone: str) -> list[str]:
        """Ids of the leads whose profile has this phone number, in order."""

    async def save(self, leads: Mapping[str, Lead],
                   effects: Sequence[tuple[str, Effects]]) -> None:
        """Store the leads and what their decisions asked for (set-based: once per batch)."""

    async def erase(self, lead_id: str, *, now: float) -> bool:
        """Forget the lead (GDPR art. 17, `adapters/erasure.py`): True if there was one."""

    async def absorb(self, lead_id: str, *, into: str, moved: Collection[str],
                     stages: tuple[str, str], now: float) -> None:
        """Fold the rows of `lead_id` into `into` (`adapters/merge.py`): its row goes, its
        history and enrollments move (those of `moved` programs with their timers), and the
        history says "merged from `lead_id`". `stages`: (absorbed's, merged lead's). (The link
        is recorded by `link`.)"""

    async def link(self, lead_id: str, *, into: str, now: float) -> None:
        """Remember that `lead_id` went into `into` (and so did what had gone into it)."""

    async def merged_into(self, lead_ids: Iterable[str]) -> dict[str, str]:
        """absorbed id -> the lead it was folded into, for those of `lead_ids` merged away."""

    async def sends(self, message_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """message id -> (program id, step id) of the messages sent with these ids."""


class ProcessedEvents(Protocol):
    """Marks of the scored events already decided (their dedupe keys)."""

    async def claim(self, keys: Sequence[str], *, now: float,
                    replayed: Iterable[str] = ()) -> set[str]:
        """Mark the events processed; the keys not processed before (the rest are
        redeliveries). An event whose decision failed is a redelivery too, unless it is
        `replayed` from its dead letter: then it is decided again."""

    async def mark_failed(self, keys: Sequence[str], *, now: float) -> None:
        """These (claimed) events were dead-lettered: a replay decides them again, a plain
        redelivery does not."""


class Timers(Protocol):
    async def due_leads(self, *, now: float, limit: int) -> list[str]:
        """The leads of the first `limit` due timers, in due order (nothing taken): lock them
        before `claim_due`, so that timers are locked after leads, as decisions do."""

    async def claim_due(self, *, now: float, limit: int,
                        leads: Collection[str] | None = None) -> list[DueTimer]:
        """Due timers (of these `leads`, if given), taken (no other replica gets them) and
        deleted: if the unit of work fails they come back."""

    async def count_due(self, *, now: float) -> int:
        """How many timers are due by `now` (taken by nobody yet, or being fired)."""


class UnitOfWork(Protocol):
    @property
    def leads(self) -> Leads: ...
    @property
    def events(self) -> ProcessedEvents: ...
    @property
    def timers(self) -> Timers: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...

    async def now(self) -> float:
        """The shared clock (wall clock plus the stored offset), read once per unit of work."""

    async def advance_clock(self, seconds: float) -> float:
        """Move the shared clock forward; the new offset."""

    async def clock_offset(self) -> float:
        """How far the shared clock is ahead of the wall clock (seconds)."""

    async def reset_clock(self) -> None:
        """Put the shared clock back on the wall clock (local and demo runs)."""

    def publish(self, *records: Outgoing) -> None:
        """Records for the outbox, written at commit."""


class Views(Protocol):
    """Read models for the API (nothing here changes state)."""

    async def lead(self, lead_id: str) -> dict[str, Any] | None: ...

    async def ranking(self, *, model: str, t: float, limit: int, cursor: Cursor | None,
                      stage: str | None = None,
                      owner: str | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Leads by their score in `model` at `t`, best first, after `cursor`; and the cursor
        of the next page (None: no more)."""

    async def program_stats(self) -> dict[str, dict[str, Any]]: ...

    async def funnel(self) -> dict[str, Any]: ...
