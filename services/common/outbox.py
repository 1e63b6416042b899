"""The transactional outbox, shared by the services that own tables (orchestrator, dispatch).

Records to publish are inserted in the same transaction as the state change that caused them;
`relay` publishes pending rows and deletes them only once Kafka acknowledged every one, so a
record is published at least once and never lost (consumers dedupe). Each service has its own
`outbox` table with the same columns: id, topic, key, value, headers, created_at."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


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


async def claim(conn: AsyncConnection, table: Table, limit: int) -> list[tuple[int, Outgoing]]:
    """The oldest pending rows, locked so another replica's relay skips them."""
    rows = await conn.execute(select(table).order_by(table.c.id).limit(limit)
                              .with_for_update(skip_locked=True))
    return [(r.id, Outgoing(r.topic, r.key, r.value, [(h[0], h[1]) for h in r.headers]))
            for r in rows]


async def relay(engine: AsyncEngine, table: Table, producer: AIOKafkaProducer,
                limit: int = 500) -> int:
    """Publish up to `limit` pending rows; the number published. One replica relays at a time
    (a transaction-scoped advisory lock per table), so a lead's records keep their order."""
    async with engine.begin() as conn:
        if not await conn.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"),
                                 {"name": f"nurture-outbox:{table.schema or ''}.{table.name}"}):
            return 0
        rows = await claim(conn, table, limit)
        if not rows:
            return 0
        futures = [await producer.send(o.topic, o.value, key=o.key,
                                       headers=[(k, v.encode()) for k, v in o.headers])
                   for _, o in rows]
        await asyncio.gather(*futures)
        await conn.execute(delete(table).where(table.c.id.in_([i for i, _ in rows])))
    return len(rows)
