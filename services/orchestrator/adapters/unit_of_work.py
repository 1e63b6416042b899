"""The PostgreSQL unit of work: one connection and one transaction per `async with`, the
repositories over it (the classes at the end of `adapters/repository.py`), the outbox rows written
at commit and the relay woken after it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.db import outbox
from services.common.db.outbox import Outgoing
from services.common.kafka.topics import Topics
from services.orchestrator.adapters import repository as repo
from services.orchestrator.adapters import tables
from services.orchestrator.adapters.repository import PgLeads, PgProcessedEvents, PgTimers


class PgUnitOfWork:
    """`async with PgUnitOfWork(engine, topics, outbox_ready) as uow:` one transaction."""

    def __init__(self, engine: AsyncEngine, topics: Topics, outbox_ready: asyncio.Event) -> None:
        self.engine, self.topics, self.outbox_ready = engine, topics, outbox_ready
        self.leads, self.events = PgLeads(self), PgProcessedEvents(self)
        self.timers = PgTimers(self)
        self._conn: AsyncConnection | None = None
        self._now: float | None = None
        self._out: list[Outgoing] = []
        self.wrote = False

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        return self._conn

    async def __aenter__(self) -> Self:
        self._conn = await self.engine.connect()
        try:
            await self._conn.begin()
        except BaseException:  # the connection goes back to the pool, not leaked
            await self._conn.close()
            self._conn = None
            raise
        self._now, self._out, self.wrote = None, [], False
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        conn = self.conn
        try:
            if exc_type is None:
                if self._out:
                    at = datetime.fromtimestamp(await self.now(), UTC)
                    await outbox.enqueue(conn, tables.outbox, self._out, at)
                await conn.commit()  # (if it fails, closing the connection rolls back)
            else:
                await conn.rollback()
        finally:
            self._conn = None
            await conn.close()
        if exc_type is None and (self.wrote or self._out):
            self.outbox_ready.set()

    async def now(self) -> float:
        if self._now is None:
            self._now = time.time() + await repo.clock_offset(self.conn)
        return self._now

    async def advance_clock(self, seconds: float) -> float:
        offset = await repo.advance_clock(self.conn, seconds=seconds)
        self._now = None  # read again: the clock moved
        return offset

    async def clock_offset(self) -> float:
        return await repo.clock_offset(self.conn)

    async def reset_clock(self) -> None:
        await repo.reset_clock(self.conn)
        self._now = None

    def publish(self, *records: Outgoing) -> None:
        self._out.extend(records)
