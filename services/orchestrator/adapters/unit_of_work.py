"""The PostgreSQL unit of work: one connection and one transaction per `async with`, the
repositories over it (`adapters/repository.py`, `adapters/erasure.py`), the outbox rows written
at commit and the relay woken after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.db import outbox
from services.common.db.outbox import Outgoing
from services.common.kafka.topics import Topics
from services.orchestrator.adapters import erasure, tables
from services.orchestrator.adapters import repository as repo
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Lead
from services.orchestrator.service_layer.unit_of_work import DueTimer


class PgLeads:
    def __init__(self, uow: PgUnitOfWork) -> None:
        self._uow = uow

    async def lock(self, lead_ids: Iterable[str]) -> dict[str, Lead]:
        return await repo.lock_leads(self._uow.conn, lead_ids=lead_ids)

    async def get(self, lead_id: str) -> Lead | None:
        return await repo.get_lead(self._uow.conn, lead_id=lead_id)

    async def with_phone(self, phone: str) -> list[str]:
        return await repo.leads_with_phone(self._uow.conn, phone=phone)

    async def save(self, leads: Mapping[str, Lead],
                   effects: Sequence[tuple[str, Effects]]) -> None:
        uow = self._uow
        await repo.save(uow.conn, leads=leads, effects=effects, topics=uow.topics,
                        now=await uow.now())
        uow.wrote = uow.wrote or any(fx.commands or fx.stage_changes for _, fx in effects)

    async def erase(self, lead_id: str, *, now: float) -> bool:
        return await erasure.erase(self._uow.conn, lead_id=lead_id, topics=self._uow.topics,
                                   now=now)

    async def sends(self, message_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        m = tables.messages.c
        rows = await self._uow.conn.execute(select(m.message_id, m.program_id, m.step_id).where(
            m.message_id.in_(ids), m.status == "sent"))
        return {str(r.message_id): (str(r.program_id), str(r.step_id)) for r in rows}


class PgProcessedEvents:
    def __init__(self, uow: PgUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, keys: Sequence[str], *, now: float,
                    replayed: Iterable[str] = ()) -> set[str]:
        return await repo.claim_events(self._uow.conn, keys=keys, now=now,
                                       replayed=set(replayed))

    async def mark_failed(self, keys: Sequence[str], *, now: float) -> None:
        await repo.mark_failed(self._uow.conn, keys=keys, now=now)


class PgTimers:
    def __init__(self, uow: PgUnitOfWork) -> None:
        self._uow = uow

    async def claim_due(self, *, now: float, limit: int) -> list[DueTimer]:
        return await repo.claim_due_timers(self._uow.conn, now=now, limit=limit)


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

    def publish(self, *records: Outgoing) -> None:
        self._out.extend(records)
