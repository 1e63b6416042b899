"""The unit of work: one transaction over dispatch's store, its repositories, and the outbox
rows it publishes.

`async with uow:` begins the transaction; leaving the block normally commits it together with
every record `uow.publish`ed inside it (outcome events, dead letters: the outbox), and then
wakes the outbox relay; an exception rolls everything back and publishes nothing. Nobody else
wakes the relay. The PostgreSQL implementation is adapters/unit_of_work.py, the in-memory one
(same behavior, for the unit tests) adapters/memory.py; tests/dispatch/contract runs the same
tests against both.

The repositories keep the exactly-once rules of adapters/repository.py: a delivery is inserted
once per message id; `claim_due` leases the rows it returns (the lease is the claim's fencing
token: a step taken under an expired claim changes nothing); `start_attempts` is the hand-off
mark (`sending`); `finish` and `reschedule` change a row only while the caller still holds it;
an erased lead's deliveries are scrubbed whenever they leave `sending`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from services.common.db.outbox import Outgoing
from services.dispatch.domain.deliveries import Delivery, NewDelivery
from services.dispatch.domain.suppressions import Change

Held = tuple[str, datetime | None]
"""(status, lease) of a caller's hold on a delivery: `sending` after its hand-off (no lease),
`pending` under its own claim (the lease) before one."""


class Deliveries(Protocol):
    """The delivery rows, one per message id."""

    async def insert(self, *, rows: Sequence[NewDelivery], now: datetime) -> set[str]:
        """Insert pending deliveries, due now; the message ids that were new."""

    async def retry_failed(self, *, rows: Sequence[NewDelivery], now: datetime,
                           unconfirmed: str) -> set[str]:
        """Failed deliveries back to pending (a replay after a fix), except the ones whose
        last error starts with `unconfirmed` and the erased ones; the ids put back."""

    async def claim_due(self, *, channel: str, now: datetime, limit: int,
                        lease_until: datetime) -> list[Delivery]:
        """Due pending deliveries of `channel`, oldest first, leased until `lease_until`."""

    async def start_attempts(self, *, claims: Mapping[str, datetime],
                             now: datetime) -> dict[str, int]:
        """Mark `sending` the deliveries still pending under their claim (id -> lease);
        id -> attempt number for those."""

    async def finish_sent(self, *, sent: Mapping[str, str | None], now: datetime) -> None:
        """Record `sent` (id -> provider id) and scrub the erased ones."""

    async def finish(self, *, message_id: str, status: str, now: datetime,
                     provider_id: str | None = None, error: str | None = None,
                     attempts: int | None = None, held: Held | None = None) -> bool:
        """A final status, if `held` still holds; True when it changed and the lead is not
        erased."""

    async def reschedule(self, *, message_id: str, at: datetime, now: datetime, error: str,
                         status: str, lease: datetime | None = None,
                         attempts: int | None = None) -> bool:
        """Back to pending, due `at`, if the caller still holds it and the lead is not
        erased."""

    async def claim_stale_sending(self, *, before: datetime, limit: int) -> list[Delivery]:
        """Deliveries left `sending` since before `before`, locked."""

    async def get(self, *, message_id: str) -> Delivery | None: ...

    async def count_by_status(self) -> dict[str, int]: ...


class Suppressions(Protocol):
    """Who must not be contacted, on which channel (`*`: all), and why."""

    async def for_leads(self, *, lead_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """lead id -> channel -> reason, for the leads that have any."""

    async def suppress(self, *, lead_id: str, channel: str, reason: str, at: datetime) -> None:
        """Suppress `channel` for a lead; a newer reason replaces an older one."""

    async def apply(self, *, changes: Sequence[Change]) -> None:
        """Suppress and lift, each only over an older record (one change per lead and
        channel)."""

    async def erase(self, *, lead_ids: Sequence[str], now: datetime) -> int:
        """Suppress the leads on every channel and scrub their deliveries; rows changed."""


class UnitOfWork(Protocol):
    """One transaction (see the module docstring)."""

    @property
    def deliveries(self) -> Deliveries: ...

    @property
    def suppressions(self) -> Suppressions: ...

    def publish(self, *records: Outgoing) -> None:
        """Write `records` to the outbox when this unit of work commits."""

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True, slots=True)
class Start:
    """A claimed delivery to mark `sending`, under the claim's lease (its fencing token)."""

    message_id: str
    lease: datetime


@dataclass(frozen=True, slots=True)
class Sent:
    """A provider call that succeeded, to be recorded as `sent` with its outcome event."""

    message_id: str
    provider_id: str | None
    event: Outgoing


class Statuses(Protocol):
    """The `sending` and `sent` writes of the messages in flight (adapters/status_writer.py
    shares their transactions between concurrent attempts)."""

    async def start(self, claim: Start) -> int | None:
        """Mark a claimed delivery `sending` (committed); its attempt number, or None when it
        is no longer pending under that claim."""

    async def sent(self, success: Sent) -> datetime:
        """Record `sent` and queue its event (committed); when."""
