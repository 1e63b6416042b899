"""Revision 0005: the processed-event marks written before it (a failed decision marked by the
key prefix "failed\\x1e") still mean the same after it (a `failed` column)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.orchestrator.adapters import repository as repo
from services.orchestrator.adapters.migrate import upgrade

OLD_MARKS = [
    "t\x1eok",  # processed
    "failed\x1et\x1ebad",  # dead-lettered, not replayed yet
    "failed\x1et\x1efixed", "t\x1efixed",  # dead-lettered, then replayed and decided
]


async def test_marks_written_before_0005_keep_their_meaning(database_url: str) -> None:
    schema = f"omarks_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema, "0004")
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        async with engine.begin() as conn:
            for key in OLD_MARKS:
                await conn.execute(text("INSERT INTO processed_events VALUES (:k, now())"),
                                   {"k": key})
        await asyncio.to_thread(upgrade, database_url, schema)
        async with engine.begin() as conn:
            rows = await conn.execute(text("SELECT event_key, failed FROM processed_events"))
            assert {r.event_key: r.failed for r in rows} == {
                "t\x1eok": False, "t\x1ebad": True, "t\x1efixed": False}
            keys = ["t\x1eok", "t\x1ebad", "t\x1efixed"]
            assert await repo.claim_events(conn, keys=keys, now=1e9) == set()
            assert await repo.claim_events(conn, keys=keys, now=1e9, replayed=keys) \
                == {"t\x1ebad"}
    finally:
        await engine.dispose()


async def test_a_failed_mark_an_older_replica_writes_after_0005_still_counts(
        database_url: str) -> None:
    """During a rolling upgrade a replica older than 0005 still marks a failed decision the
    old way; the new code reads that mark (and converts it)."""
    schema = f"omarks_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        async with engine.begin() as conn:
            for key in ("failed\x1et\x1elate", "failed\x1et\x1ereplay"):
                await conn.execute(text("INSERT INTO processed_events (event_key, processed_at)"
                                        " VALUES (:k, now())"), {"k": key})
        async with engine.begin() as conn:
            assert await repo.claim_events(conn, keys=["t\x1elate"], now=1e9) == set()
            assert await repo.claim_events(conn, keys=["t\x1ereplay"], now=1e9,
                                           replayed=["t\x1ereplay"]) == {"t\x1ereplay"}
            rows = await conn.execute(text("SELECT event_key, failed FROM processed_events"))
            assert {r.event_key: r.failed for r in rows} == {
                "t\x1elate": True, "t\x1ereplay": False}
            # converted: a later replay of the failed one is decided again, once
            assert await repo.claim_events(conn, keys=["t\x1elate"], now=1e9,
                                           replayed=["t\x1elate"]) == {"t\x1elate"}
    finally:
        await engine.dispose()
