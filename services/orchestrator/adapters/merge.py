"""Moving the rows of a lead folded into another (docs/identity.md; the decision is
`domain/merge.py`), in the caller's transaction:
- the absorbed lead's row and ranking rows are deleted (its document lives on in the other's);
- its stage history and message log move to the absorbing lead, and a history row says
  "merged from <id>";
- its enrollments move too (an active one whose program the absorbing lead already had ends:
  `exited`, reason `merged`), and so do the timers of the enrollments that moved; its other
  timers (score timers, stale steps) are deleted;
and, whether or not the orchestrator knew the absorbed id, a link row remembers where it went
(the ids that had gone into it follow), for its scored events that come after the merge
(`link`, `links`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime

from sqlalchemy import and_, case, delete, exists, insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from services.orchestrator.adapters import tables as t

MERGED_CAUSE = "merged from "


async def absorb(conn: AsyncConnection, *, lead_id: str, into: str, moved: Collection[str],
                 stages: tuple[str, str], now: float) -> None:
    """Fold the rows of `lead_id` into `into`; `moved`: the programs whose enrollment moved,
    `stages`: (the absorbed lead's stage, the merged lead's)."""
    at = datetime.fromtimestamp(now, UTC)
    await conn.execute(delete(t.leads).where(t.leads.c.lead_id == lead_id))
    await conn.execute(delete(t.lead_scores).where(t.lead_scores.c.lead_id == lead_id))
    tm = t.timers.c
    await conn.execute(update(t.timers).where(
        tm.lead_id == lead_id, tm.kind != "score", tm.program_id.in_(list(moved)),
    ).values(lead_id=into))
    await conn.execute(delete(t.timers).where(tm.lead_id == lead_id))
    for table in (t.stage_history, t.messages):
        await conn.execute(update(table).where(table.c.lead_id == lead_id).values(lead_id=into))
    e, other = t.enrollments, aliased(t.enrollments)
    kept = e.c.status != "active"
    if moved:
        kept = kept | e.c.program_id.in_(list(moved))
    await conn.execute(update(e).where(e.c.lead_id == lead_id, ~exists().where(and_(
        other.c.lead_id == into, other.c.program_id == e.c.program_id,
        other.c.entered_at == e.c.entered_at))).values(
        lead_id=into, status=case((kept, e.c.status), else_="exited"),
        exit_reason=case((kept, e.c.exit_reason), else_="merged"),
        exited_at=case((kept, e.c.exited_at), else_=at)))
    await conn.execute(delete(e).where(e.c.lead_id == lead_id))
    await conn.execute(insert(t.stage_history).values(
        lead_id=into, from_stage=stages[0], to_stage=stages[1], at=at,
        cause=MERGED_CAUSE + lead_id))


async def link(conn: AsyncConnection, *, lead_id: str, into: str, now: float) -> None:
    """Remember that `lead_id` went into `into`, and so did the ids that had gone into it."""
    links, at = t.lead_links, datetime.fromtimestamp(now, UTC)
    await conn.execute(update(links).where(links.c.merged_into == lead_id).values(
        merged_into=into))
    await conn.execute(upsert(links).values(lead_id=lead_id, merged_into=into, at=at)
                       .on_conflict_do_update(index_elements=[links.c.lead_id],
                                              set_={"merged_into": into, "at": at}))


async def links(conn: AsyncConnection, lead_ids: Iterable[str]) -> dict[str, str]:
    """absorbed id -> the lead it went into, for those of `lead_ids` that were merged away."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    c = t.lead_links.c
    rows = await conn.execute(select(c.lead_id, c.merged_into).where(c.lead_id.in_(ids)))
    return {str(r.lead_id): str(r.merged_into) for r in rows}
