"""The PostgreSQL unit of work (service_layer/unit_of_work.py): one connection and transaction,
the repositories bound to it (adapters/repository.py), and the outbox rows
published in it, written at commit; the relay is woken after the commit."""

from __future__ import annotations

import asyncio
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.clock import Clock
from services.common.db import outbox
from services.common.db.outbox import Outgoing
from services.dispatch.adapters import tables
from services.dispatch.adapters.repository import SqlDeliveries, SqlSuppressions


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
                if self._records:
                    await outbox.enqueue(self._conn, tables.outbox, self._records,
                                         self._clock.now())
                await self._conn.commit()
            else:
                await self._conn.rollback()
        finally:
            await self._conn.close()
        if exc_type is None and self._records:
            self._outbox_ready.set()
