"""Read models for the API: a lead's full picture, program performance, the funnel. Plain SQL
over the history tables; nothing here changes state."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.vocabulary import canonical_reason
from services.orchestrator.adapters import tables as t
from services.orchestrator.domain.lead import FUNNEL, STAGES
from services.orchestrator.domain.ranking import Cursor, Rank, page
from services.orchestrator.domain.stages import score_at


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


async def ranking(conn: AsyncConnection, *, model: str, at: float, limit: int,
                  cursor: Cursor | None, stage: str | None = None,
                  owner: str | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Leads by their score in `model` at `at`, best first (`domain/ranking.py`): the best
    `limit + 1` after the cursor of each fit group, by index, merged; then their pictures."""
    s = t.lead_scores
    where = [s.c.model == model, *([s.c.stage == stage] if stage else []),
             *([s.c.owner_id == owner] if owner else [])]
    candidates: list[tuple[str, Rank]] = []
    for fit in await _fits(conn, where):
        group = select(s.c.lead_id, s.c.fit, s.c.sign, s.c.key, s.c.half_life) \
            .where(*where, s.c.fit == fit)
        if cursor is not None:
            sign, key, lead_id = cursor.start(fit)
            group = group.where(
                tuple_(s.c.sign, s.c.key, s.c.lead_id) < tuple_(sign, key, lead_id)
                if lead_id is not None else tuple_(s.c.sign, s.c.key) <= tuple_(sign, key))
        rows = await conn.execute(group.order_by(s.c.sign.desc(), s.c.key.desc(),
                                                 s.c.lead_id.desc()).limit(limit + 1))
        candidates += [(r.lead_id, Rank(r.fit, r.sign, r.key, r.half_life)) for r in rows]
    found, after = page(candidates, at, limit, cursor)
    docs = {r.lead_id: r for r in await conn.execute(
        select(t.leads.c.lead_id, t.leads.c.stage, t.leads.c.last_activity_at,
               t.leads.c.state["scores"][model].label("kept"),
               t.leads.c.state["profile"]["owner_id"].astext.label("owner_id"))
        .where(t.leads.c.lead_id.in_([lead_id for lead_id, _, _ in found])))}
    return [{"lead_id": lead_id, "stage": docs[lead_id].stage,
             "owner_id": docs[lead_id].owner_id,
             "last_activity_at": docs[lead_id].last_activity_at,
             "score": None if docs[lead_id].kept is None else score_at(docs[lead_id].kept, at)}
            for lead_id, _, _ in found if lead_id in docs], after


async def _fits(conn: AsyncConnection, where: list[Any]) -> list[float]:
    """The distinct fits of the rows `where` selects, by skipping along the index (a recursive
    query: one index probe per fit value, not a scan of the rows)."""
    s = t.lead_scores
    first = select(s.c.fit).where(*where).order_by(s.c.fit).limit(1).scalar_subquery()
    fits = select(first.label("fit")).cte("fits", recursive=True)
    following = select(s.c.fit).where(*where, s.c.fit > fits.c.fit) \
        .order_by(s.c.fit).limit(1).scalar_subquery()
    fits = fits.union_all(select(following).where(fits.c.fit.isnot(None)))
    rows = await conn.execute(select(fits.c.fit).where(fits.c.fit.isnot(None)))
    return [r.fit for r in rows]


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

    async def ranking(self, *, model: str, t: float, limit: int, cursor: Cursor | None,
                      stage: str | None = None,
                      owner: str | None = None) -> tuple[list[dict[str, Any]], Cursor | None]:
        async with self.engine.connect() as conn:
            return await ranking(conn, model=model, at=t, limit=limit, cursor=cursor,
                                 stage=stage, owner=owner)

    async def program_stats(self) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as conn:
            return await program_stats(conn)

    async def funnel(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            return await funnel(conn)
