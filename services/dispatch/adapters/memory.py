"""In-memory repositories and unit of work, behaving like the PostgreSQL ones (the contract
suite in tests/dispatch/contract runs the same tests against both): one row per message id,
leases as fencing tokens, the guarded finish, the scrubbing of erased leads, the outbox written
at commit. Units of work run one at a time (a lock held from `__aenter__` to `__aexit__`, like
serializable transactions); a rollback puts the state back as it was."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType

from schemas.vocabulary import ALL_CHANNELS, ERASED
from services.common.clock import Clock, SystemClock
from services.common.db.outbox import Outgoing
from services.dispatch.domain.deliveries import FINAL_STATUSES, Delivery, NewDelivery
from services.dispatch.domain.suppressions import LIFTABLE, Change
from services.dispatch.service_layer.unit_of_work import Held


@dataclass(slots=True)
class Row:
    """A delivery row (the columns of the `deliveries` table)."""

    message_id: str
    lead_id: str
    channel: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    payload: bytes | None
    origin_topic: str
    origin_partition: int
    origin_offset: int
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    provider_id: str | None = None

    def delivery(self, lease: datetime | None = None) -> Delivery:
        return Delivery(self.message_id, self.lead_id, self.channel, self.status, self.attempts,
                        self.payload, self.origin_topic, self.origin_partition,
                        self.origin_offset, self.last_error, self.provider_id, lease)


@dataclass
class MemoryStore:
    """What the tables hold: deliveries, suppressions ((lead, channel) -> (reason, at)) and
    the outbox (records committed, in order)."""

    deliveries: dict[str, Row] = field(default_factory=dict)
    suppressions: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)
    outbox: list[Outgoing] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def erased(self, lead_id: str) -> bool:
        found = self.suppressions.get((lead_id, ALL_CHANNELS))
        return found is not None and found[0] == ERASED


def _ours(row: Row | None, *, status: str, lease: datetime | None) -> bool:
    """The row while the caller still holds it (repository `_ours`)."""
    return row is not None and row.status == status \
        and (lease is None or row.next_attempt_at == lease)


class MemoryDeliveries:
    """`Deliveries` in a MemoryStore."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def insert(self, *, rows: Sequence[NewDelivery], now: datetime) -> set[str]:
        unique = {r.message_id: r for r in reversed(rows)}  # the first record of an id wins
        fresh: set[str] = set()
        for r in unique.values():
            if r.message_id not in self.store.deliveries:
                self.store.deliveries[r.message_id] = Row(
                    r.message_id, r.lead_id, r.channel, "pending", 0, now, r.payload,
                    r.origin_topic, r.origin_partition, r.origin_offset, now, now)
                fresh.add(r.message_id)
        return fresh

    async def retry_failed(self, *, rows: Sequence[NewDelivery], now: datetime,
                           unconfirmed: str) -> set[str]:
        back: set[str] = set()
        for r in sorted(rows, key=lambda r: r.message_id):
            row = self.store.deliveries.get(r.message_id)
            if row is None or row.lead_id != r.lead_id or row.status != "failed" or (
                    row.last_error is not None and row.last_error.startswith(unconfirmed)):
                continue
            row.status, row.attempts, row.next_attempt_at, row.updated_at = \
                "pending", 0, now, now
            row.payload, row.origin_topic = r.payload, r.origin_topic
            row.origin_partition, row.origin_offset = r.origin_partition, r.origin_offset
            back.add(r.message_id)
        return back

    async def claim_due(self, *, channel: str, now: datetime, limit: int,
                        lease_until: datetime) -> list[Delivery]:
        due = sorted((row for row in self.store.deliveries.values()
                      if row.status == "pending" and row.channel == channel
                      and row.next_attempt_at is not None and row.next_attempt_at <= now),
                     key=lambda row: row.next_attempt_at or now)[:limit]
        for row in due:
            row.next_attempt_at = lease_until
        return [row.delivery(lease_until) for row in due]

    async def start_attempts(self, *, claims: Mapping[str, datetime],
                             now: datetime) -> dict[str, int]:
        started: dict[str, int] = {}
        for message_id, lease in claims.items():
            row = self.store.deliveries.get(message_id)
            if row is not None and _ours(row, status="pending", lease=lease):
                row.status, row.attempts, row.updated_at = "sending", row.attempts + 1, now
                started[message_id] = row.attempts
        return started

    async def finish_sent(self, *, sent: Mapping[str, str | None], now: datetime) -> None:
        for message_id, provider_id in sent.items():
            row = self.store.deliveries.get(message_id)
            if row is not None:
                row.status, row.provider_id, row.last_error = "sent", provider_id or None, None
                row.updated_at, row.next_attempt_at, row.payload = now, None, None
        self.scrub_erased(now=now, message_ids=list(sent))

    async def finish(self, *, message_id: str, status: str, now: datetime,
                     provider_id: str | None = None, error: str | None = None,
                     attempts: int | None = None, held: Held | None = None) -> bool:
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        row = self.store.deliveries.get(message_id)
        changed = row is not None if held is None else \
            _ours(row, status=held[0], lease=held[1])
        if changed and row is not None:
            row.status, row.provider_id, row.last_error = status, provider_id, error
            row.updated_at, row.next_attempt_at, row.payload = now, None, None
            row.attempts = row.attempts if attempts is None else max(row.attempts, attempts)
        erased = self.scrub_erased(now=now, message_ids=[message_id])
        return changed and not erased

    async def reschedule(self, *, message_id: str, at: datetime, now: datetime, error: str,
                         status: str, lease: datetime | None = None,
                         attempts: int | None = None) -> bool:
        row = self.store.deliveries.get(message_id)
        if row is None or not _ours(row, status=status, lease=lease):
            return False
        row.status, row.next_attempt_at, row.last_error, row.updated_at = \
            "pending", at, error, now
        row.attempts = row.attempts if attempts is None else max(row.attempts, attempts)
        return self.scrub_erased(now=now, message_ids=[message_id]) == 0

    def scrub_erased(self, *, now: datetime, lead_id: str | None = None,
                     message_ids: Sequence[str] | None = None) -> int:
        """repository.scrub_erased: the erased leads' rows not `sending`, scrubbed."""
        rows = [self.store.deliveries[i] for i in message_ids if i in self.store.deliveries] \
            if message_ids is not None else list(self.store.deliveries.values())
        changed = 0
        for row in rows:
            if row.status == "sending" or not self.store.erased(row.lead_id) \
                    or (lead_id is not None and row.lead_id != lead_id):
                continue
            row.lead_id, row.payload = f"erased-{uuid.uuid4().hex}", None
            row.next_attempt_at, row.updated_at = None, now
            row.last_error = ERASED if row.last_error == ERASED else None
            row.status = "suppressed" if row.status == "pending" else row.status
            changed += 1
        return changed

    async def claim_stale_sending(self, *, before: datetime, limit: int) -> list[Delivery]:
        stale = sorted((row for row in self.store.deliveries.values()
                        if row.status == "sending" and row.updated_at < before),
                       key=lambda row: row.updated_at)[:limit]
        return [row.delivery() for row in stale]

    async def get(self, *, message_id: str) -> Delivery | None:
        row = self.store.deliveries.get(message_id)
        return row.delivery() if row is not None else None

    async def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.store.deliveries.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


class MemorySuppressions:
    """`Suppressions` in a MemoryStore."""

    def __init__(self, store: MemoryStore, deliveries: MemoryDeliveries) -> None:
        self.store, self.deliveries = store, deliveries

    async def for_leads(self, *, lead_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        wanted = set(lead_ids)
        found: dict[str, dict[str, str]] = {}
        for (lead_id, channel), (reason, _) in sorted(self.store.suppressions.items()):
            if lead_id in wanted:
                found.setdefault(lead_id, {})[channel] = reason
        return found

    async def suppress(self, *, lead_id: str, channel: str, reason: str, at: datetime) -> None:
        self.store.suppressions[lead_id, channel] = (reason, at)

    async def apply(self, *, changes: Sequence[Change]) -> None:
        for c in changes:
            known = self.store.suppressions.get((c.lead_id, c.channel))
            if c.reason is not None and (known is None or known[1] <= c.at):
                self.store.suppressions[c.lead_id, c.channel] = (c.reason, c.at)
            elif c.reason is None and known is not None and known[1] <= c.at \
                    and known[0] in LIFTABLE:  # consent lifts an opt-out only
                del self.store.suppressions[c.lead_id, c.channel]

    async def erase(self, *, lead_ids: Sequence[str], now: datetime) -> int:
        changed = 0
        for lead_id in lead_ids:
            await self.suppress(lead_id=lead_id, channel=ALL_CHANNELS, reason=ERASED,
                                at=now)
            changed += self.deliveries.scrub_erased(now=now, lead_id=lead_id)
        return changed


class MemoryUnitOfWork:
    """A unit of work on a MemoryStore; `outbox_ready` is set after a commit that published."""

    deliveries: MemoryDeliveries
    suppressions: MemorySuppressions

    def __init__(self, store: MemoryStore, outbox_ready: asyncio.Event | None = None,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.outbox_ready = outbox_ready or asyncio.Event()
        self.clock = clock or SystemClock()
        self._records: list[Outgoing] = []
        self.deliveries = MemoryDeliveries(store)
        self.suppressions = MemorySuppressions(store, self.deliveries)

    def publish(self, *records: Outgoing) -> None:
        self._records.extend(records)

    async def __aenter__(self) -> MemoryUnitOfWork:
        await self.store.lock.acquire()
        self._records = []
        self._saved = ({k: replace(v) for k, v in self.store.deliveries.items()},
                       dict(self.store.suppressions))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.store.outbox.extend(self._records)
            else:
                self.store.deliveries, self.store.suppressions = self._saved
        finally:
            self.store.lock.release()
        if exc_type is None and self._records:
            self.outbox_ready.set()
