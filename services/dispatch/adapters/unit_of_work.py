"""The PostgreSQL unit of work (service_layer/unit_of_work.py): one connection and transaction,
the repositories bound to it (adapters/repository.py, adapters/erasure.py), and the outbox rows
published in it, written at commit; the relay is woken after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.clock import Clock
from services.common.db.outbox import Outgoing
from services.dispatch.adapters import erasure
from services.dispatch.adapters import repository as repo
from services.dispatch.domain.deliveries import Delivery, NewDelivery
from services.dispatch.domain.suppressions import Change
from services.dispatch.service_layer.unit_of_work import Held


class SqlDeliveries:
    """`Deliveries` on a connection (adapters/repository.py)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def insert(self, *, rows: Sequence[NewDelivery], now: datetime) -> set[str]:
        return await repo.insert_deliveries(self.conn, rows=rows, now=now)

    async def retry_failed(self, *, rows: Sequence[NewDelivery], now: datetime,
                           unconfirmed: str) -> set[str]:
        return await repo.retry_failed(self.conn, rows=rows, now=now, unconfirmed=unconfirmed)

    async def claim_due(self, *, channel: str, now: datetime, limit: int,
                        lease_until: datetime) -> list[Delivery]:
        return await repo.claim_due(self.conn, channel=channel, now=now, limit=limit,
                                    lease_until=lease_until)

    async def start_attempts(self, *, claims: Mapping[str, datetime],
                             now: datetime) -> dict[str, int]:
        return await repo.start_attempts(self.conn, claims=claims, now=now)

    async def finish_sent(self, *, sent: Mapping[str, str | None], now: datetime) -> None:
        await repo.finish_sent(self.conn, sent=sent, now=now)

    async def finish(self, *, message_id: str, status: str, now: datetime,
                     provider_id: str | None = None, error: str | None = None,
                     attempts: int | None = None, held: Held | None = None) -> bool:
        return await repo.finish(self.conn, message_id=message_id, status=status, now=now,
                                 provider_id=provider_id, error=error, attempts=attempts,
                                 held=held)

    async def reschedule(self, *, message_id: str, at: datetime, now: datetime, error: str,
                         status: str, lease: datetime | None = None,
                         attempts: int | None = None) -> bool:
        return await repo.reschedule(self.conn, message_id=message_id, at=at, now=now,
                                     error=error, status=status, lease=lease,
                                     attempts=attempts)

    async def claim_stale_sending(self, *, before: datetime, limit: int) -> list[Delivery]:
        return await repo.claim_stale_sending(self.conn, before=before, limit=limit)

    async def get(self, *, message_id: str) -> Delivery | None:
        return await repo.get_delivery(self.conn, message_id=message_id)

    async def count_by_status(self) -> dict[str, int]:
        return await repo.count_by_status(self.conn)


class SqlSuppressions:
    """`Suppressions` on a connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def for_leads(self, *, lead_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        return await repo.suppressions_for(self.conn, lead_ids=lead_ids)

    async def suppress(self, *, lead_id: str, channel: str, reason: str, at: datetime) -> None:
        await repo.suppress(self.conn, lead_id=lead_id, channel=channel, reason=reason, at=at)

    async def apply(self, *, changes: Sequence[Change]) -> None:
        await repo.apply_suppressions(self.conn, changes=changes)

    async def erase(self, *, lead_ids: Sequence[str], now: datetime) -> int:
        return await erasure.erase(self.conn, lead_ids=lead_ids, now=now)


class PostgresUnitOfWork:
    """One transaction on `engine`; `outbox_ready` is set after a commit that published."""

    deliveries: SqlDeliveries
    suppressions: SqlSuppressions

    def __init__(self, engine: AsyncEngine, outbox_ready: asyncio.Event, clock: Clock) -> None:
        self._engine, self._outbox_ready, self._clock = engine, outbox_ready, clock
        self._records: list[Outgoing] = []

    def publish(self, *records: Outgoing) -> None:
        self._records.extend(records)

    async def __aenter__(self) -> PostgresUnitOfWork:
        self._conn = await self._engine.connect()
        try:
            await self._conn.begin()
        except BaseException:
            await self._conn.close()
            raise
        self.deliveries, self.suppressions = SqlDeliveries(self._conn), SqlSuppressions(self._conn)
        self._records = []
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                await repo.enqueue(self._conn, records=self._records, now=self._clock.now())
                await self._conn.commit()
            else:
                await self._conn.rollback()
        finally:
            await self._conn.close()
        if exc_type is None and self._records:
            self._outbox_ready.set()
