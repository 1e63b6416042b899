"""PostgreSQL access for dispatch: keyword-only, typed functions on a connection the caller
owns, so a status change and the events it causes (outbox rows) commit together.

A delivery row is the durable record of one message id: inserted once (a redelivered command
finds it and changes nothing), claimed by one replica at a time (`FOR UPDATE SKIP LOCKED` plus
a lease on `next_attempt_at`), marked `sending` when the provider call reaches its hand-off
point (adapters/handoff.py) and given its final status right after. The raw command
(`payload`) is kept while the message may still be attempted and cleared once it is final: it
holds personal data. A delivery of an erased lead (suppression `*` / `erased`,
`erase`, below) is scrubbed whenever it leaves `sending`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    any_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Exists

from schemas.vocabulary import ALL_CHANNELS, ERASED
from services.common.db.upsert import upsert
from services.dispatch.adapters import tables as t
from services.dispatch.domain.deliveries import Delivery, NewDelivery
from services.dispatch.domain.suppressions import LIFTABLE, Change
from services.dispatch.service_layer.unit_of_work import Held

__all__ = ["Delivery", "NewDelivery", "SqlDeliveries", "SqlSuppressions", "apply_suppressions",
           "claim_due", "claim_stale_sending", "count_by_status", "erase", "finish",
           "finish_sent", "get_delivery", "insert_deliveries", "reschedule", "retry_failed",
           "scrub_erased", "start_attempts", "suppress", "suppressions_for"]


def _delivery(row: Any, lease: datetime | None = None) -> Delivery:
    return Delivery(row.message_id, row.lead_id, row.channel, row.status, row.attempts,
                    row.payload, row.origin_topic, row.origin_partition, row.origin_offset,
                    row.last_error, row.provider_id, lease)


def _ours(message_id: str, *, status: str, lease: datetime | None) -> list[ColumnElement[bool]]:
    """The delivery row while the caller still holds it: in `status`, and, before the hand-off,
    still under the caller's own claim. `next_attempt_at` is the claim's fencing token: a
    replica that claimed the row after this claim's lease ran out moved it."""
    d = t.deliveries
    where = [d.c.message_id == message_id, d.c.status == status]
    if lease is not None:
        where.append(d.c.next_attempt_at == lease)
    return where


# The statements of a message's way (recorded, claimed, `sending`, `sent`, scrubbed) are built
# once: their values travel as bound parameters, arrays for the sets of ids, so SQLAlchemy
# neither rebuilds a statement per call nor renders an expanding IN per call (SQLAlchemy was
# about a quarter of dispatch's CPU per email before, 14% after round 4; docs/benchmarks.md).
_IDS = ARRAY(Text)
_INSERT = insert(t.deliveries).on_conflict_do_nothing().returning(t.deliveries.c.message_id)


async def insert_deliveries(conn: AsyncConnection, *, rows: Sequence[NewDelivery],
                            now: datetime) -> set[str]:
    """Insert pending deliveries, due now; the message ids that were new (the others were
    already known: redeliveries, which change nothing)."""
    if not rows:
        return set()
    unique = {r.message_id: r for r in reversed(rows)}  # the first record of an id wins
    # executemany ("insertmanyvalues"): one cached statement, sent in pages, not a new
    # N-row statement compiled for every batch
    result = await conn.execute(_INSERT, [
        {"message_id": r.message_id, "lead_id": r.lead_id, "channel": r.channel,
         "status": "pending", "attempts": 0, "next_attempt_at": now, "payload": r.payload,
         "origin_topic": r.origin_topic, "origin_partition": r.origin_partition,
         "origin_offset": r.origin_offset, "created_at": now, "updated_at": now}
        for r in unique.values()])
    return set(result.scalars())


async def retry_failed(conn: AsyncConnection, *, rows: Sequence[NewDelivery], now: datetime,
                       unconfirmed: str) -> set[str]:
    """Deliveries that failed for good, back to pending with their command (a failed delivery
    forgot it) and a fresh attempt budget: the commands were replayed from the dead-letter
    topic after a fix. Never one whose last attempt may have reached the provider (`last_error`
    starting with `unconfirmed`): that could be a second message; never one of an erased lead
    (its row no longer carries the lead id of the command). The ids put back. One statement per
    row: replays are rare."""
    d = t.deliveries
    back: set[str] = set()
    for r in sorted(rows, key=lambda r: r.message_id):
        stmt = (update(d)
                .where(d.c.message_id == r.message_id, d.c.lead_id == r.lead_id,
                       d.c.status == "failed",
                       or_(d.c.last_error.is_(None), ~d.c.last_error.startswith(unconfirmed)))
                .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now,
                        payload=r.payload, origin_topic=r.origin_topic,
                        origin_partition=r.origin_partition, origin_offset=r.origin_offset)
                .returning(d.c.message_id))
        back.update((await conn.execute(stmt)).scalars())
    return back


async def claim_due(conn: AsyncConnection, *, channel: str, now: datetime, limit: int,
                    lease_until: datetime) -> list[Delivery]:
    """Pending deliveries of `channel` that are due, oldest first, locked against other
    replicas and leased (`next_attempt_at` moved to `lease_until`, which each Delivery carries
    as `lease`), so that if this process dies before attempting them they come back when the
    lease ends."""
    rows = (await conn.execute(_DUE, {"channel": channel, "now": now, "limit": limit})).all()
    if rows:
        await conn.execute(_LEASE, {"ids": [r.message_id for r in rows], "lease": lease_until})
    return [_delivery(r, lease_until) for r in rows]


_DUE = (select(t.deliveries)
        .where(t.deliveries.c.status == "pending", t.deliveries.c.channel == bindparam("channel"),
               t.deliveries.c.next_attempt_at <= bindparam("now"))
        .order_by(t.deliveries.c.next_attempt_at).limit(bindparam("limit"))
        .with_for_update(skip_locked=True))
_LEASE = (update(t.deliveries)
          .where(t.deliveries.c.message_id == any_(bindparam("ids", type_=_IDS)))
          .values(next_attempt_at=bindparam("lease")))


async def start_attempts(conn: AsyncConnection, *, claims: Mapping[str, datetime],
                         now: datetime) -> dict[str, int]:
    """Mark claimed deliveries `sending` (message id -> the claim's lease), at their provider
    calls' hand-off, in one statement: message id -> attempt number, for those still pending
    under that same claim. Missing: another replica took one over after its lease ran out, or
    it was erased (scrubbed to `suppressed`) since it was claimed."""
    if not claims:
        return {}
    rows = await conn.execute(_START, {"ids": list(claims), "leases": list(claims.values()),
                                       "now": now})
    return {str(r.message_id): int(r.attempts) for r in rows}


_START = text(
    "UPDATE deliveries AS d SET status = 'sending', attempts = d.attempts + 1, "
    "updated_at = CAST(:now AS timestamptz) "
    "FROM unnest(CAST(:ids AS text[]), CAST(:leases AS timestamptz[])) AS c(message_id, lease) "
    "WHERE d.message_id = c.message_id AND d.next_attempt_at = c.lease "
    "AND d.status = 'pending' RETURNING d.message_id, d.attempts")


async def finish_sent(conn: AsyncConnection, *, sent: Mapping[str, str | None],
                      now: datetime) -> None:
    """`finish(status="sent")` for several deliveries (message id -> provider id) in one
    statement, then scrub the erased ones among them."""
    if not sent:
        return
    await conn.execute(_SENT, {"ids": list(sent), "providers": [v or None for v in sent.values()],
                               "now": now})
    await scrub_erased(conn, message_ids=list(sent), now=now)


_SENT = text(
    "UPDATE deliveries AS d SET status = 'sent', provider_id = c.provider_id, "
    "last_error = NULL, updated_at = CAST(:now AS timestamptz), next_attempt_at = NULL, "
    "payload = NULL "
    "FROM unnest(CAST(:ids AS text[]), CAST(:providers AS text[])) AS c(message_id, provider_id) "
    "WHERE d.message_id = c.message_id")


async def finish(conn: AsyncConnection, *, message_id: str, status: str, now: datetime,
                 provider_id: str | None = None, error: str | None = None,
                 attempts: int | None = None, held: tuple[str, datetime | None] | None = None,
                 ) -> bool:
    """Give a delivery its final status and forget the command; `attempts`, when given, is
    the number of attempts made (one that failed before its hand-off was not counted yet).
    `held`, when given, is (status, lease) of the caller's hold on the row (see `_ours`):
    nothing changes unless it still holds. True when the row changed and its lead is not
    erased (the caller may tell about it)."""
    if status not in t.FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final status")
    d = t.deliveries
    where = [d.c.message_id == message_id] if held is None else \
        _ours(message_id, status=held[0], lease=held[1])
    changed = await conn.execute(update(d).where(*where).values(
        status=status, provider_id=provider_id, last_error=error, updated_at=now,
        next_attempt_at=None, payload=None,
        attempts=d.c.attempts if attempts is None else func.greatest(d.c.attempts, attempts)))
    erased = await scrub_erased(conn, message_id=message_id, now=now)
    return bool(changed.rowcount) and not erased


async def reschedule(conn: AsyncConnection, *, message_id: str, at: datetime, now: datetime,
                     error: str, status: str, lease: datetime | None = None,
                     attempts: int | None = None) -> bool:
    """Back to pending, due again `at`, if the caller still holds the delivery (`_ours`:
    `sending` after a hand-off; `pending` under the caller's claim, `lease`, before one);
    `attempts`, when given, the attempts made so far. False when it did not (another replica
    took it over) or when the lead was erased meanwhile (the delivery is scrubbed and
    `suppressed` instead)."""
    d = t.deliveries
    moved = await conn.execute(update(d).where(*_ours(message_id, status=status,
                                                      lease=lease)).values(
        status="pending", next_attempt_at=at, last_error=error, updated_at=now,
        attempts=d.c.attempts if attempts is None else func.greatest(d.c.attempts, attempts)))
    if not moved.rowcount:
        return False
    return await scrub_erased(conn, message_id=message_id, now=now) == 0


async def scrub_erased(conn: AsyncConnection, *, now: datetime, message_id: str | None = None,
                       lead_id: str | None = None,
                       message_ids: Sequence[str] | None = None) -> int:
    """Scrub the deliveries (of one message id, of one lead id, or of several message ids)
    whose lead is erased and that are not in the middle of a provider call: no command
    (`payload`, it holds the profile), no provider error text (it may quote an address), the
    lead id replaced by a random `erased-<uuid>`; one still `pending` is `suppressed`. How many
    rows changed."""
    params: dict[str, Any] = {"erased_id": f"erased-{uuid.uuid4().hex}", "now": now}
    if message_id is not None:
        stmt, params["b_message_id"] = _SCRUB_MESSAGE, message_id
    elif lead_id is not None:
        stmt, params["b_lead_id"] = _SCRUB_LEAD, lead_id
    elif message_ids is not None:
        stmt, params["ids"] = _SCRUB_MESSAGES, list(message_ids)
    else:
        raise TypeError("scrub_erased needs message_id, lead_id or message_ids")
    result = await conn.execute(stmt, params)
    return int(result.rowcount or 0)


def _erased() -> Exists:
    """Whether a delivery's lead is erased (correlated to the `deliveries` row)."""
    s = t.suppressions
    return select(s.c.lead_id).where(s.c.lead_id == t.deliveries.c.lead_id,
                                     s.c.channel == ALL_CHANNELS,
                                     s.c.reason == ERASED).exists()


def _scrub(which: ColumnElement[bool]) -> Any:
    d = t.deliveries
    return update(d).where(d.c.status != "sending", _erased(), which).values(
        lead_id=bindparam("erased_id"), payload=None, next_attempt_at=None,
        updated_at=bindparam("now"),
        last_error=case((d.c.last_error == ERASED, ERASED), else_=None),
        status=case((d.c.status == "pending", "suppressed"), else_=d.c.status))


_SCRUB_MESSAGE = _scrub(t.deliveries.c.message_id == bindparam("b_message_id"))
_SCRUB_LEAD = _scrub(t.deliveries.c.lead_id == bindparam("b_lead_id"))
_SCRUB_MESSAGES = _scrub(t.deliveries.c.message_id == any_(bindparam("ids", type_=_IDS)))


async def claim_stale_sending(conn: AsyncConnection, *, before: datetime,
                              limit: int) -> list[Delivery]:
    """Deliveries left `sending` since before `before` (the process died mid-attempt), locked."""
    d = t.deliveries
    rows = await conn.execute(
        select(d).where(d.c.status == "sending", d.c.updated_at < before)
        .order_by(d.c.updated_at).limit(limit).with_for_update(skip_locked=True))
    return [_delivery(r) for r in rows]


async def get_delivery(conn: AsyncConnection, *, message_id: str) -> Delivery | None:
    row = (await conn.execute(select(t.deliveries)
                              .where(t.deliveries.c.message_id == message_id))).first()
    return _delivery(row) if row is not None else None


async def suppressions_for(conn: AsyncConnection, *,
                           lead_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """lead id -> channel (or '*') -> reason, for the leads that have any suppression."""
    if not lead_ids:
        return {}
    rows = await conn.execute(_SUPPRESSIONS, {"ids": sorted(set(lead_ids))})
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        found.setdefault(row.lead_id, {})[row.channel] = row.reason
    return found


_SUPPRESSIONS = select(t.suppressions.c.lead_id, t.suppressions.c.channel,
                       t.suppressions.c.reason).where(
    t.suppressions.c.lead_id == any_(bindparam("ids", type_=_IDS)))


async def suppress(conn: AsyncConnection, *, lead_id: str, channel: str, reason: str,
                   at: datetime) -> None:
    """Suppress `channel` ('*' for all) for a lead; a newer reason replaces an older one."""
    stmt = insert(t.suppressions).values(lead_id=lead_id, channel=channel, reason=reason, at=at)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[t.suppressions.c.lead_id, t.suppressions.c.channel],
        set_={"reason": stmt.excluded.reason, "at": stmt.excluded.at}))


_SUPPRESS_IF_NEWER = upsert(t.suppressions, ["lead_id", "channel"], ["reason", "at"],
                            only_if=lambda stmt: t.suppressions.c.at <= stmt.excluded.at)


async def apply_suppressions(conn: AsyncConnection, *, changes: Sequence[Change]) -> None:
    """Suppress and lift, each only over an older record (a late event changes nothing)."""
    s = t.suppressions
    adds = [c for c in changes if c.reason is not None]
    if adds:  # executemany of one cached statement (a multi-row VALUES compiles every time)
        await conn.execute(_SUPPRESS_IF_NEWER, [{"lead_id": c.lead_id, "channel": c.channel,
                                                 "reason": c.reason, "at": c.at} for c in adds])
    for lift in (c for c in changes if c.reason is None):
        # consent lifts an opt-out, never a complaint or a hard bounce
        await conn.execute(delete(s).where(s.c.lead_id == lift.lead_id,
                                           s.c.channel == lift.channel, s.c.at <= lift.at,
                                           s.c.reason.in_(LIFTABLE)))


async def count_by_status(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(select(t.deliveries.c.status, func.count())
                              .group_by(t.deliveries.c.status))
    return {str(k): int(v) for k, v in rows}


async def erase(conn: AsyncConnection, *, lead_ids: Sequence[str], now: datetime) -> int:
    """Suppress `lead_ids` on every channel and scrub their deliveries; how many rows changed.

    Erasure in dispatch: on `lead.erased` (published by the orchestrator, docs/security.md)
    dispatch records an all-channel suppression `(<lead id>, '*', 'erased')` and scrubs the lead's
    deliveries: they lose everything that can hold PII — the raw command (its `context` carries the
    profile) and the provider's last error text (it may quote an address) — and are re-keyed to a
    random `erased-<uuid>`, so per-status counts stay right and nothing links back to the person.
    Messages still waiting are not sent (`suppressed`).

    The suppression closes the two ways a message could still go out afterwards: a delivery in the
    middle of its provider call (`sending`) is left alone here, and when the call ends the
    repository scrubs it (a transient failure is not rescheduled); a command still on
    `nurture.dispatch.v1` when the erasure arrives (the dispatch consumer's lag) is inserted later,
    and the last check before sending finds the suppression and drops it, scrubbed. The suppression
    keeps the lead id itself (pseudonymous: no email, phone or name): it is the record that this id
    must not be contacted again, and is never lifted by a later consent."""
    d = t.deliveries
    changed = 0
    for lead_id in lead_ids:
        # lock every row of the lead, `sending` ones too: an attempt finishing concurrently
        # then commits either before this (and is scrubbed below) or after it (and sees the
        # suppression when it scrubs itself)
        await conn.execute(select(d.c.message_id).where(d.c.lead_id == lead_id)
                           .order_by(d.c.message_id).with_for_update())
        await suppress(conn, lead_id=lead_id, channel=ALL_CHANNELS, reason=ERASED, at=now)
        changed += await scrub_erased(conn, lead_id=lead_id, now=now)
    return changed


# --- the repositories of the unit of work (adapters/unit_of_work.py) --------------------


class SqlDeliveries:
    """`Deliveries` (service_layer/unit_of_work.py) on a connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def insert(self, *, rows: Sequence[NewDelivery], now: datetime) -> set[str]:
        return await insert_deliveries(self.conn, rows=rows, now=now)

    async def retry_failed(self, *, rows: Sequence[NewDelivery], now: datetime,
                           unconfirmed: str) -> set[str]:
        return await retry_failed(self.conn, rows=rows, now=now, unconfirmed=unconfirmed)

    async def claim_due(self, *, channel: str, now: datetime, limit: int,
                        lease_until: datetime) -> list[Delivery]:
        return await claim_due(self.conn, channel=channel, now=now, limit=limit,
                               lease_until=lease_until)

    async def start_attempts(self, *, claims: Mapping[str, datetime],
                             now: datetime) -> dict[str, int]:
        return await start_attempts(self.conn, claims=claims, now=now)

    async def finish_sent(self, *, sent: Mapping[str, str | None], now: datetime) -> None:
        await finish_sent(self.conn, sent=sent, now=now)

    async def finish(self, *, message_id: str, status: str, now: datetime,
                     provider_id: str | None = None, error: str | None = None,
                     attempts: int | None = None, held: Held | None = None) -> bool:
        return await finish(self.conn, message_id=message_id, status=status, now=now,
                            provider_id=provider_id, error=error, attempts=attempts, held=held)

    async def reschedule(self, *, message_id: str, at: datetime, now: datetime, error: str,
                         status: str, lease: datetime | None = None,
                         attempts: int | None = None) -> bool:
        return await reschedule(self.conn, message_id=message_id, at=at, now=now,
                                error=error, status=status, lease=lease,
                                attempts=attempts)

    async def claim_stale_sending(self, *, before: datetime, limit: int) -> list[Delivery]:
        return await claim_stale_sending(self.conn, before=before, limit=limit)

    async def get(self, *, message_id: str) -> Delivery | None:
        return await get_delivery(self.conn, message_id=message_id)

    async def count_by_status(self) -> dict[str, int]:
        return await count_by_status(self.conn)


class SqlSuppressions:
    """`Suppressions` on a connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def for_leads(self, *, lead_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        return await suppressions_for(self.conn, lead_ids=lead_ids)

    async def suppress(self, *, lead_id: str, channel: str, reason: str, at: datetime) -> None:
        await suppress(self.conn, lead_id=lead_id, channel=channel, reason=reason, at=at)

    async def apply(self, *, changes: Sequence[Change]) -> None:
        await apply_suppressions(self.conn, changes=changes)

    async def erase(self, *, lead_ids: Sequence[str], now: datetime) -> int:
        return await erase(self.conn, lead_ids=lead_ids, now=now)
