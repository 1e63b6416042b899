"""The transactional outbox, shared by the services that own tables (orchestrator, dispatch).

Records to publish are inserted in the same transaction as the state change that caused them;
`relay` publishes pending rows and deletes them only once Kafka acknowledged every one, so a
record is published at least once and never lost (consumers dedupe). Each service has its own
`outbox` table with the same columns: id, topic, key, value, headers, created_at."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from sqlalchemy import (
    BigInteger,
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A Kafka record waiting in the outbox (headers as text, as stored in JSON)."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, str]]


async def enqueue(conn: AsyncConnection, table: Table, records: Sequence[Outgoing],
                  now: datetime) -> None:
    if records:
        await conn.execute(insert(table), [
            {"topic": r.topic, "key": r.key, "value": r.value, "headers": r.headers,
             "created_at": now} for r in records])


@dataclass(frozen=True, slots=True)
class _Statements:
    """A table's relay statements, built once (values bound, ids as an array): SQLAlchemy
    neither rebuilds them nor renders an expanding IN for every round."""

    lock: Any
    claim: Any
    delete: Any
    park: Any


@functools.cache
def _statements(table: Table) -> _Statements:
    ids = any_(bindparam("ids", type_=ARRAY(BigInteger)))
    return _Statements(
        lock=text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"),
        claim=select(table).where(table.c.parked_reason.is_(None)).order_by(table.c.id)
        .limit(bindparam("limit")).with_for_update(skip_locked=True),
        delete=delete(table).where(table.c.id == ids),
        park=update(table).where(table.c.id == ids).values(parked_reason=bindparam("reason")))


async def claim(conn: AsyncConnection, table: Table, limit: int) -> list[tuple[int, Outgoing]]:
    """The oldest pending rows, locked so another replica's relay skips them."""
    rows = await conn.execute(_statements(table).claim, {"limit": limit})
    return [(r.id, Outgoing(r.topic, r.key, r.value, [(h[0], h[1]) for h in r.headers]))
            for r in rows]


async def relay(engine: AsyncEngine, table: Table, producer: AIOKafkaProducer,
                limit: int = 500) -> int:
    """Publish up to `limit` pending rows; the number published. One replica relays at a time
    (a transaction-scoped advisory lock per table), so a lead's records keep their order."""
    statements = _statements(table)
    async with engine.begin() as conn:
        if not await conn.scalar(statements.lock,
                                 {"name": f"nurture-outbox:{table.schema or ''}.{table.name}"}):
            return 0
        rows = await claim(conn, table, limit)
        if not rows:
            return 0
        done, refused = [], []
        for (row_id, o), result in zip(rows, await _send_all(producer, rows), strict=True):
            if result is None:
                done.append(row_id)
            elif isinstance(result, MessageSizeTooLargeError):
                refused.append(row_id)  # Kafka will never take it: park it, go on
                log.error("outbox record refused by Kafka; parked", extra={
                    "outbox_id": row_id, "topic": o.topic, "size": len(o.value)})
            else:
                raise result  # retriable: the transaction rolls back, the next round retries
        if refused:
            await conn.execute(statements.park, {"ids": refused,
                                                 "reason": "refused by Kafka: record too large"})
        await conn.execute(statements.delete, {"ids": done})
    return len(done)


async def _send_all(producer: AIOKafkaProducer,
                    rows: list[tuple[int, Outgoing]]) -> list[BaseException | None]:
    """Send in row order (so the partition order is the outbox order), then await every ack;
    per row: None when acknowledged, else the error."""
    pending: list[asyncio.Future[object] | BaseException] = []
    for _, o in rows:
        try:
            pending.append(await producer.send(o.topic, o.value, key=o.key,
                                               headers=[(k, v.encode()) for k, v in o.headers]))
        except MessageSizeTooLargeError as exc:
            pending.append(exc)
    results: list[BaseException | None] = []
    for item in pending:
        if isinstance(item, BaseException):
            results.append(item)
            continue
        try:
            await item
            results.append(None)
        except Exception as exc:  # reported per row to the caller, which decides
            results.append(exc)
    return results


async def backlog(engine: AsyncEngine, table: Table) -> tuple[int, int]:
    """(pending, parked) rows of `table`, for the backlog gauges."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(
            func.count().filter(table.c.parked_reason.is_(None)),
            func.count().filter(table.c.parked_reason.is_not(None))))).one()
    return int(row[0]), int(row[1])
