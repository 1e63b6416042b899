"""Read models for the API: a lead's full picture, program performance, the funnel. Plain SQL
over the history tables; nothing here changes state."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.vocabulary import canonical_reason
from services.orchestrator.adapters import tables as t
from services.orchestrator.domain.lead import FUNNEL, STAGES


async def lead_view(conn: AsyncConnection, *, lead_id: str) -> dict[str, Any] | None:
    state = await conn.scalar(select(t.leads.c.state).where(t.leads.c.lead_id == lead_id))
    if state is None:
        return None
    history = await conn.execute(
        select(t.stage_history.c.from_stage, t.stage_history.c.to_stage, t.stage_history.c.at,
               t.stage_history.c.cause)
        .where(t.stage_history.c.lead_id == lead_id).order_by(t.stage_history.c.id))
    enrollments = await conn.execute(
        select(t.enrollments).where(t.enrollments.c.lead_id == lead_id)
        .order_by(t.enrollments.c.entered_at))
    messages = await conn.execute(
        select(t.messages).where(t.messages.c.lead_id == lead_id)
        .order_by(t.messages.c.id.desc()).limit(100))
    return {
        "lead_id": lead_id, "stage": state["stage"], "profile": state["profile"],
        "scores": state["scores"], "interests": state["interests"],
        "journey_stage": state["journey_stage"], "tags": state["tags"],
        "suppressed": {channel: canonical_reason(reason)  # a lead not saved since the words
                       for channel, reason in state["suppressed"].items()},  # were unified
        "stage_history": [dict(r._mapping) for r in history],
        "enrollments": [{k: v for k, v in r._mapping.items() if k != "lead_id"}
                        for r in enrollments],
        "messages": [{k: v for k, v in r._mapping.items() if k not in ("id", "lead_id")}
                     for r in messages],
    }


async def program_stats(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}

    def entry(program: str) -> dict[str, Any]:
        return stats.setdefault(program, {"entered": 0, "active": 0, "waiting_at_step": {},
                                          "exited": {}, "messages": {}})

    rows = await conn.execute(select(t.enrollments.c.program_id, t.enrollments.c.status,
                                     t.enrollments.c.exit_reason, t.enrollments.c.step_id,
                                     func.count()).group_by(t.enrollments.c.program_id,
                                                            t.enrollments.c.status,
                                                            t.enrollments.c.exit_reason,
                                                            t.enrollments.c.step_id))
    for program, status, reason, step, n in rows:
        e = entry(program)
        e["entered"] += n
        if status == "active":
            e["active"] += n
            e["waiting_at_step"][step] = e["waiting_at_step"].get(step, 0) + n
        else:
            key = reason or status
            e["exited"][key] = e["exited"].get(key, 0) + n
    rows = await conn.execute(select(t.messages.c.program_id, t.messages.c.step_id,
                                     t.messages.c.status, func.count())
                              .group_by(t.messages.c.program_id, t.messages.c.step_id,
                                        t.messages.c.status))
    for program, step, status, n in rows:
        entry(program)["messages"].setdefault(step, {})[status] = n
    return stats


FUNNEL_SQL = text("""
WITH spans AS (
  SELECT lead_id, to_stage AS stage, at,
         lead(at) OVER (PARTITION BY lead_id ORDER BY at, id) AS left_at
  FROM stage_history)
SELECT stage,
       count(DISTINCT lead_id) AS reached,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM left_at - at))
         FILTER (WHERE left_at IS NOT NULL) AS median_seconds
FROM spans GROUP BY stage
""")
CYCLE_SQL = text("""
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM won - opened)) AS median,
       count(*) AS deals
FROM (SELECT lead_id,
             min(at) FILTER (WHERE to_stage IN ('sql', 'opportunity')) AS opened,
             min(at) FILTER (WHERE to_stage = 'customer') AS won
      FROM stage_history GROUP BY lead_id) cycles
WHERE won IS NOT NULL AND opened IS NOT NULL
""")


async def funnel(conn: AsyncConnection) -> dict[str, Any]:
    rows = await conn.execute(select(t.leads.c.stage, func.count()).group_by(t.leads.c.stage))
    counts: dict[str, int] = {stage: n for stage, n in rows}
    reached: dict[str, int] = {}
    median: dict[str, float | None] = {}
    for stage, n, seconds in await conn.execute(FUNNEL_SQL):
        reached[stage], median[stage] = int(n), None if seconds is None else float(seconds)
    conversion = {
        f"{a}->{b}": round(reached.get(b, 0) / reached[a], 4) if reached.get(a) else None
        for a, b in itertools.pairwise(FUNNEL)}
    cycle = (await conn.execute(CYCLE_SQL)).one()
    return {
        "leads_by_stage": {s: int(counts.get(s, 0)) for s in STAGES},
        "reached": {s: reached.get(s, 0) for s in STAGES},
        "conversion": conversion,
        "median_seconds_in_stage": {s: median.get(s) for s in STAGES},
        "sales_cycle": {"deals": int(cycle.deals),
                        "median_seconds": None if cycle.median is None else float(cycle.median)},
    }


class PgViews:
    """The read models above, each on a connection of its own (no transaction needed)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def lead(self, lead_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            return await lead_view(conn, lead_id=lead_id)

    async def program_stats(self) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as conn:
            return await program_stats(conn)

    async def funnel(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            return await funnel(conn)
