"""Set-based counts for the orchestrator's gauges (leads per stage, active enrollments, timer
backlog), refreshed on an interval rather than per event: a few GROUP BYs per round."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.db import outbox
from services.orchestrator.adapters import tables
from services.orchestrator.adapters.records import ts
from services.orchestrator.adapters.repository import clock_offset

if TYPE_CHECKING:
    from services.orchestrator.metrics import OrchestratorMetrics

LEADS_SQL = text("""
SELECT l.stage,
       EXISTS (SELECT 1 FROM enrollments e WHERE e.lead_id = l.lead_id) AS nurtured,
       count(*) AS n
FROM leads l GROUP BY 1, 2
""")
ACTIVE_SQL = text("SELECT program_id, count(*) FROM enrollments WHERE status = 'active' "
                  "GROUP BY program_id")
TIMERS_SQL = text("""
SELECT count(*) AS pending,
       count(*) FILTER (WHERE due_at <= :now) AS overdue,
       coalesce(extract(epoch FROM :now - min(due_at) FILTER (WHERE due_at <= :now)), 0)
         AS oldest_overdue
FROM timers
""")


@dataclass
class Counts:
    leads: dict[tuple[str, bool], int] = field(default_factory=dict)  # (stage, nurtured)
    active: dict[str, int] = field(default_factory=dict)  # by program id
    timers_pending: int = 0
    timers_overdue: int = 0
    oldest_overdue_seconds: float = 0.0


async def counts(conn: AsyncConnection, *, now: float) -> Counts:
    out = Counts()
    for stage, nurtured, n in await conn.execute(LEADS_SQL):
        out.leads[(str(stage), bool(nurtured))] = int(n)
    for program, n in await conn.execute(ACTIVE_SQL):
        out.active[str(program)] = int(n)
    row = (await conn.execute(TIMERS_SQL, {"now": ts(now)})).one()
    out.timers_pending, out.timers_overdue = int(row.pending), int(row.overdue)
    out.oldest_overdue_seconds = float(row.oldest_overdue)
    return out


async def refresh(engine: AsyncEngine, metrics: OrchestratorMetrics) -> int:
    """Recount the gauges (stages, enrollments, timers, outbox) by the shared clock; 0, so the
    loop waits its interval."""
    async with engine.connect() as conn:
        now = time.time() + await clock_offset(conn)
        found = await counts(conn, now=now)
    metrics.refresh(found, await outbox.backlog(engine, tables.outbox))
    return 0
