"""The services' engine checks a pooled connection for life only when it sat idle
(`services/common/db/engine.py`), on the session's PostgreSQL: a connection the server closed
while it was idle is replaced unseen; one closed while in busy use fails one transaction, which
invalidates the pool, and the next transaction runs on a new connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.common.db.engine import make_engine
from tests.support import wait_until


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


async def pids(engine: AsyncEngine, n: int) -> list[int]:
    """The backend pids of `n` connections, all taken at once, then returned to the pool."""
    conns = [await engine.connect() for _ in range(n)]
    try:
        return [int(await c.scalar(text("SELECT pg_backend_pid()"))) for c in conns]
    finally:
        for c in conns:
            await c.close()


async def kill(admin: AsyncEngine, victims: list[int]) -> None:
    """Terminate the backends `victims` (as a restarted server would) and wait until gone."""
    async with admin.connect() as conn:
        for pid in victims:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})

    async def gone() -> bool:
        async with admin.connect() as conn:
            alive = await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"), {"p": victims})
        return alive == 0
    await wait_until(gone, timeout=10, what="the terminated backends to exit")


async def test_a_connection_closed_by_the_server_while_idle_is_replaced_unseen(
        database_url: str, admin: AsyncEngine) -> None:
    engine = make_engine(database_url, schema="public", ping_after=0.0)  # every reuse checked
    try:
        before = await pids(engine, 2)
        await kill(admin, before)
        after = await pids(engine, 2)  # no error: each dead connection was swapped at checkout
        assert not set(after) & set(before)
    finally:
        await engine.dispose()


async def test_a_connection_closed_while_in_busy_use_fails_one_transaction_and_no_more(
        database_url: str, admin: AsyncEngine) -> None:
    engine = make_engine(database_url, schema="public", ping_after=3600.0)  # never checked
    try:
        before = await pids(engine, 2)
        await kill(admin, before)
        with pytest.raises(exc.DBAPIError) as failed:
            await pids(engine, 1)
        assert failed.value.connection_invalidated
        # the failure invalidated the whole pool: the other dead connection is not handed out
        after = await pids(engine, 2)
        assert not set(after) & set(before)
    finally:
        await engine.dispose()
