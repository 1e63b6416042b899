"""The drain's view of the services' work (deploy/chaos/observe.backlog) on their real,
migrated tables: the run counts only once every kind of unfinished work is gone."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg  # type: ignore[import-untyped]

from deploy.chaos.observe import backlog
from services.dispatch.adapters.migrate import upgrade as upgrade_dispatch
from services.orchestrator.adapters.migrate import upgrade as upgrade_orchestrator


async def test_backlog_sees_each_kind_of_unfinished_work(database_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    orch, disp = f"chaos_o_{tag}", f"chaos_d_{tag}"
    await asyncio.to_thread(upgrade_orchestrator, database_url, orch)
    await asyncio.to_thread(upgrade_dispatch, database_url, disp)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    o = await asyncpg.connect(dsn, server_settings={"search_path": orch})
    d = await asyncpg.connect(dsn, server_settings={"search_path": disp})

    async def seen(planned: list[str]) -> tuple[int, int, int, int, int, bool]:
        b = await backlog(database_url, planned, orchestrator=orch, dispatch=disp)
        assert b is not None
        return b.unfinished, b.unseen, b.outbox, b.due_timers, b.timers, b.idle
    try:
        assert await seen([]) == (0, 0, 0, 0, 0, True)
        # a planned message dispatch has no row for: its command is not consumed yet
        assert await seen(["m1"]) == (0, 1, 0, 0, 0, False)
        await d.execute(
            "INSERT INTO deliveries (message_id, lead_id, channel, status, attempts, "
            "origin_topic, origin_partition, origin_offset, created_at, updated_at) "
            "VALUES ('m1', 'l', 'webhook', 'sending', 1, 't', 0, 0, now(), now())")
        assert await seen(["m1"]) == (1, 0, 0, 0, 0, False)  # caught mid-send
        await d.execute("UPDATE deliveries SET status = 'pending'")
        assert await seen(["m1"]) == (1, 0, 0, 0, 0, False)  # due again, or leased
        await d.execute("UPDATE deliveries SET status = 'sent'")
        assert await seen(["m1"]) == (0, 0, 0, 0, 0, True)
        for conn, parked in ((o, None), (d, None), (d, "too_large")):
            await conn.execute(
                "INSERT INTO outbox (topic, value, headers, created_at, "
                "parked_reason) VALUES ('t', 'v', '[]', now(), $1)", parked)
        assert await seen(["m1"]) == (0, 0, 2, 0, 0, False)  # the parked row never goes
        await o.execute("DELETE FROM outbox")
        await d.execute("DELETE FROM outbox WHERE parked_reason IS NULL")
        await o.execute(
            "INSERT INTO timers (due_at, lead_id, kind, program_id, generation) "
            "VALUES (now() + interval '1 day', 'l', 'wait', 'p', 1)")
        assert await seen(["m1"]) == (0, 0, 0, 0, 1, True)  # a later day's wait
        # the orchestrator's controllable clock moved past it: due now
        await o.execute("UPDATE clock SET offset_seconds = 2 * 86400")
        assert await seen(["m1"]) == (0, 0, 0, 1, 1, False)
    finally:
        for schema in (orch, disp):
            await o.execute(f"DROP SCHEMA {schema} CASCADE")
        await o.close()
        await d.close()


async def test_backlog_is_unknown_while_the_database_is_unreachable() -> None:
    assert await backlog("postgresql+asyncpg://nurture@127.0.0.1:1/nurture", []) is None
