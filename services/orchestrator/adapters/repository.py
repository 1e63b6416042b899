"""PostgreSQL access for the orchestrator. Keyword-only, typed functions on a connection the
caller owns, so one transaction can hold a whole batch: lead state, processed-event marks,
history, timers and outbox rows commit together or not at all. Set-based: one statement per
table per batch."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import outbox
from services.common.db.outbox import Outgoing
from services.common.db.upsert import upsert
from services.common.kafka.topics import Topics
from services.orchestrator.adapters import erasure, merge
from services.orchestrator.adapters import tables as t
from services.orchestrator.adapters.records import outbox_rows, ts
from services.orchestrator.domain.effects import Effects, Timer
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.ranking import rank_of
from services.orchestrator.service_layer.unit_of_work import DueTimer

if TYPE_CHECKING:
    from services.orchestrator.adapters.unit_of_work import PgUnitOfWork


def epoch(value: datetime) -> float:
    return value.timestamp()


async def clock_offset(conn: AsyncConnection) -> float:
    value = await conn.scalar(select(t.clock.c.offset_seconds).where(t.clock.c.id == 1))
    return float(value or 0.0)


async def advance_clock(conn: AsyncConnection, *, seconds: float) -> float:
    new = await conn.scalar(update(t.clock).where(t.clock.c.id == 1).values(
        offset_seconds=t.clock.c.offset_seconds + seconds).returning(t.clock.c.offset_seconds))
    return float(new or 0.0)


async def reset_clock(conn: AsyncConnection) -> None:
    await conn.execute(update(t.clock).where(t.clock.c.id == 1).values(offset_seconds=0.0))


async def claim_events(conn: AsyncConnection, *, keys: Sequence[str], now: float,
                       replayed: Collection[str] = ()) -> set[str]:
    """Mark events processed; return the keys that were not processed before (the rest are
    redeliveries and change nothing). An event whose decision failed (`mark_failed`) is a
    redelivery too, unless it is `replayed` from its dead letter: then it is decided again."""
    if not keys:
        return set()
    ordered = sorted(set(keys))  # two overlapping batches take the index locks in one order
    fresh, legacy = await _insert_marks(conn, ordered, now)
    failed = sorted(legacy.intersection(fresh).difference(replayed))
    if failed:  # marked failed by an older replica: a redelivery, now marked the new way
        await mark_failed(conn, keys=failed, now=now)
        fresh -= set(failed)
    again = sorted(set(replayed).intersection(ordered) - fresh)
    if again:  # failed before and replayed from the dead letter: decided again
        p = t.processed_events
        rows = await conn.execute(update(p).where(p.c.event_key.in_(again), p.c.failed)
                                  .values(failed=False, processed_at=ts(now))
                                  .returning(p.c.event_key))
        fresh |= set(rows.scalars())
    return fresh


LEGACY_FAILED = "failed\x1e"
"""How a replica older than migration 0005 marks a failed decision: a second row, the key with
this prefix. Read (and converted) while such replicas may still run during a rolling upgrade;
drop with a later migration that converts the rest."""


_MARK = text(
    "WITH inserted AS (INSERT INTO processed_events (event_key, processed_at, failed) "
    "SELECT k, CAST(:at AS timestamptz), false FROM unnest(CAST(:keys AS text[])) AS k "
    "ON CONFLICT DO NOTHING RETURNING event_key), "
    "legacy AS (DELETE FROM processed_events WHERE event_key = ANY(CAST(:legacy AS text[])) "
    "RETURNING event_key) "
    "SELECT event_key, false AS legacy FROM inserted "
    "UNION ALL SELECT event_key, true FROM legacy")
"""The marks of a batch in one round trip, one statement whatever the batch's size (the keys
travel as arrays, so SQLAlchemy compiles it once, unlike a multi-row VALUES)."""


async def _insert_marks(conn: AsyncConnection, keys: Sequence[str],
                        now: float) -> tuple[set[str], set[str]]:
    """One round trip: insert the processed marks of `keys` and delete their old-style failed
    marks; the keys newly marked, and the keys that had an old-style failed mark."""
    rows = await conn.execute(_MARK, {"keys": list(keys), "at": ts(now),
                                      "legacy": [LEGACY_FAILED + k for k in keys]})
    fresh, old = set(), set()
    for key, is_legacy in rows:
        if is_legacy:
            old.add(key.removeprefix(LEGACY_FAILED))
        else:
            fresh.add(key)
    return fresh, old


async def mark_failed(conn: AsyncConnection, *, keys: Sequence[str], now: float) -> None:
    """The events of `keys` (claimed) were dead-lettered: not processed (a replay decides them
    again), yet not to be tried again by a plain redelivery."""
    if keys:
        p = t.processed_events
        await conn.execute(update(p).where(p.c.event_key.in_(sorted(set(keys))))
                           .values(failed=True, processed_at=ts(now)))


async def lock_leads(conn: AsyncConnection, *, lead_ids: Iterable[str]) -> dict[str, Lead]:
    """Load and lock (FOR UPDATE, in id order so concurrent batches never deadlock)."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    # a lead that has no row yet cannot be locked FOR UPDATE; a transaction-scoped advisory lock
    # per lead id (taken in the same order) keeps two creators of one new lead apart
    # (unnest yields the sorted array in order, so the locks are taken in id order)
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(lead_id)) "
                            "FROM unnest(CAST(:ids AS text[])) AS lead_id"), {"ids": ids})
    rows = await conn.execute(select(t.leads.c.lead_id, t.leads.c.state)
                              .where(t.leads.c.lead_id.in_(ids))
                              .order_by(t.leads.c.lead_id).with_for_update())
    return {row.lead_id: Lead.from_dict(row.state) for row in rows}


async def leads_with_phone(conn: AsyncConnection, *, phone: str) -> list[str]:
    rows = await conn.execute(text(
        "SELECT lead_id FROM leads WHERE state->'profile'->>'phone' = :phone ORDER BY lead_id"),
        {"phone": phone})
    return [r.lead_id for r in rows]


async def get_lead(conn: AsyncConnection, *, lead_id: str) -> Lead | None:
    state = await conn.scalar(select(t.leads.c.state).where(t.leads.c.lead_id == lead_id))
    return Lead.from_dict(state) if state else None


_UPSERT_LEAD = upsert(t.leads, ["lead_id"], ["stage", "state", "stage_entered_at",
                                              "last_activity_at", "updated_at"])
_UPSERT_SCORE_TIMER = upsert(t.timers, ["lead_id", "program_id"], ["due_at"],
                             index_where="kind = 'score'")
_UPSERT_RANK = upsert(t.lead_scores, ["model", "lead_id"],
                      ["fit", "sign", "key", "half_life", "stage", "owner_id"])
_UPSERT_ENROLLMENT = upsert(t.enrollments, ["lead_id", "program_id", "entered_at"],
                            ["status", "step_id", "exit_reason", "exited_at", "program_version"])


async def save(conn: AsyncConnection, *, leads: Mapping[str, Lead],
               effects: Sequence[tuple[str, Effects]], topics: Topics, now: float) -> None:
    """Persist changed leads and everything their decisions asked for, set-based."""
    if leads:
        rows = [{"lead_id": lid, "stage": lead.stage, "state": lead.to_dict(),
                 "stage_entered_at": ts(lead.stage_entered_at),
                 "last_activity_at": ts(lead.last_activity_at), "updated_at": ts(now)}
                for lid, lead in leads.items()]
        await conn.execute(_UPSERT_LEAD, rows)
    history: list[dict[str, Any]] = []
    timers: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    out: list[Outgoing] = []
    for lead_id, fx in effects:
        history += [{"lead_id": lead_id, "from_stage": c.from_stage, "to_stage": c.to_stage,
                     "at": ts(c.at), "cause": c.cause} for c in fx.stage_changes]
        timers += [{"lead_id": lead_id, "due_at": ts(tm.due_at), "kind": tm.kind,
                    "program_id": tm.program_id, "generation": tm.generation}
                   for tm in fx.timers]
        notes += [{"lead_id": lead_id, "program_id": n.program_id, "step_id": n.step_id,
                   "channel": n.channel, "status": n.status, "reason": n.reason,
                   "at": ts(n.at), "until": ts(n.until), "message_id": n.message_id}
                  for n in fx.notes]
        out += outbox_rows(lead_id, fx, topics)
    timers, scores_due = _split_score_timers(timers)
    for table, batch in ((t.stage_history, history), (t.timers, timers), (t.messages, notes)):
        if batch:
            await conn.execute(insert(table), batch)
    if scores_due:
        await conn.execute(_UPSERT_SCORE_TIMER, scores_due)
    await outbox.enqueue(conn, t.outbox, out, ts(now) or datetime.now(UTC))
    await _mirror_enrollments(conn, leads)
    await _mirror_ranks(conn, leads)


def _split_score_timers(
        rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(other timers, score timers): of the score timers, the last per lead and model (the
    batch's newest decision; one upsert may not touch a row twice)."""
    scores = {(r["lead_id"], r["program_id"]): r for r in rows if r["kind"] == "score"}
    return [r for r in rows if r["kind"] != "score"], list(scores.values())


async def _mirror_ranks(conn: AsyncConnection, leads: Mapping[str, Lead]) -> None:
    """Keep `lead_scores` (the ranking's index rows) in step with the leads' kept scores."""
    rows = []
    for lid, lead in leads.items():
        owner = lead.profile.get("owner_id")
        for model, kept in lead.scores.items():
            rank = rank_of(kept)
            if rank is not None:
                rows.append({"model": model, "lead_id": lid, "fit": rank.fit, "sign": rank.sign,
                             "key": rank.key, "half_life": rank.half_life, "stage": lead.stage,
                             "owner_id": owner if isinstance(owner, str) else None})
    if rows:
        await conn.execute(_UPSERT_RANK, rows)


async def _mirror_enrollments(conn: AsyncConnection, leads: Mapping[str, Lead]) -> None:
    """Keep the enrollments table (for the API and reports) in step with the lead documents."""
    rows = [{"lead_id": lid, "program_id": e.program_id, "entered_at": ts(e.entered_at),
             "program_version": e.program_version, "status": e.status,
             "step_id": e.step_id, "exit_reason": e.exit_reason,
             "exited_at": ts(e.exited_at)}
            for lid, lead in leads.items() for e in lead.enrollments.values()]
    if rows:
        await conn.execute(_UPSERT_ENROLLMENT, rows)


async def due_timer_leads(conn: AsyncConnection, *, now: float, limit: int) -> list[str]:
    """The leads of the first `limit` due timers (nothing locked)."""
    rows = await conn.execute(
        select(t.timers.c.lead_id).where(t.timers.c.due_at <= ts(now))
        .order_by(t.timers.c.due_at).limit(limit))
    return list(dict.fromkeys(r.lead_id for r in rows))


async def claim_due_timers(conn: AsyncConnection, *, now: float, limit: int,
                           leads: Collection[str] | None = None) -> list[DueTimer]:
    """Due timers (of these `leads`, if given), locked so no other replica takes them (FOR
    UPDATE SKIP LOCKED), and deleted: if the transaction fails they come back."""
    due_now = t.timers.c.due_at <= ts(now)
    where = due_now if leads is None else due_now & t.timers.c.lead_id.in_(sorted(leads))
    rows = await conn.execute(
        select(t.timers).where(where).order_by(t.timers.c.due_at)
        .limit(limit).with_for_update(skip_locked=True))
    due = [DueTimer(r.id, r.lead_id, Timer(epoch(r.due_at), r.kind, r.program_id, r.generation))
           for r in rows]
    if due:
        await conn.execute(delete(t.timers).where(t.timers.c.id.in_([d.id for d in due])))
    return due


async def backlog(conn: AsyncConnection) -> dict[str, float]:
    """Outbox rows waiting, timers pending and the oldest overdue timer's lateness (seconds)."""
    row = (await conn.execute(text(
        "SELECT (SELECT count(*) FROM outbox) AS outbox, (SELECT count(*) FROM timers) AS timers"
    ))).one()
    return {"outbox": float(row.outbox), "timers": float(row.timers)}


async def count_by(conn: AsyncConnection, column: Any) -> dict[str, int]:
    rows = await conn.execute(select(column, func.count()).group_by(column))
    return {str(k): int(v) for k, v in rows}


# --- the repositories of the unit of work (adapters/unit_of_work.py) --------------------


class PgLeads:
    def __init__(self, uow: PgUnitOfWork) -> None:
        self._uow = uow

    async def lock(self, lead_ids: Iterable[str]) -> dict[str, Lead]:
        return await lock_leads(self._uow.conn, lead_ids=lead_ids)

    async def get(self, lead_id: str) -> Lead | None:
        return await get_lead(self._uow.conn, lead_id=lead_id)

    async def with_phone(self, phone: str) -> list[str]:
        return await leads_with_phone(self._uow.conn, phone=phone)

    async def save(self, leads: Mapping[str, Lead],
                   effects: Sequence[tuple[str, Effects]]) -> None:
        uow = self._uow
        await save(uow.conn, leads=leads, effects=effects, topics=uow.topics,
                        now=await uow.now())
        uow.wrote = uow.wrote or any(fx.commands or fx.stage_changes for _, fx in effects)

    async def erase(self, lead_id: str, *, now: float) -> bool:
        return await erasure.erase(self._uow.conn, lead_id=lead_id, topics=self._uow.topics,
                                   now=now)

    async def absorb(self, lead_id: str, *, into: str, moved: Collection[str],
                     stages: tuple[str, str], now: float) -> None:
        await merge.absorb(self._uow.conn, lead_id=lead_id, into=into, moved=moved,
                           stages=stages, now=now)

    async def link(self, lead_id: str, *, into: str, now: float) -> None:
        await merge.link(self._uow.conn, lead_id=lead_id, into=into, now=now)

    async def merged_into(self, lead_ids: Iterable[str]) -> dict[str, str]:
        return await merge.links(self._uow.conn, lead_ids)

    async def sends(self, message_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        m = t.messages.c
        rows = await self._uow.conn.execute(select(m.message_id, m.program_id, m.step_id).where(
            m.message_id.in_(ids), m.status == "sent"))
        return {str(r.message_id): (str(r.program_id), str(r.step_id)) for r in rows}


class PgProcessedEvents:
    def __init__(self, uow: PgUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, keys: Sequence[str], *, now: float,
                    replayed: Iterable[str] = ()) -> set[str]:
        return await claim_events(self._uow.conn, keys=keys, now=now,
                                       replayed=set(replayed))

    async def mark_failed(self, keys: Sequence[str], *, now: float) -> None:
        await mark_failed(self._uow.conn, keys=keys, now=now)


class PgTimers:
    def __init__(self, uow: PgUnitOfWork) -> None:
        self._uow = uow

    async def due_leads(self, *, now: float, limit: int) -> list[str]:
        return await due_timer_leads(self._uow.conn, now=now, limit=limit)

    async def claim_due(self, *, now: float, limit: int,
                        leads: Collection[str] | None = None) -> list[DueTimer]:
        return await claim_due_timers(self._uow.conn, now=now, limit=limit, leads=leads)

    async def count_due(self, *, now: float) -> int:
        return int(await self._uow.conn.scalar(
            select(func.count()).select_from(t.timers).where(t.timers.c.due_at <= ts(now)))
            or 0)
