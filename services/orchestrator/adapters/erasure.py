"""Erasing a person (GDPR art. 17): what the orchestrator deletes, what it keeps anonymously, and
the `lead.erased` control event that tells scoring and dispatch to do the same.

In one transaction, for one lead id:
- deleted: the lead row (profile, consent, scores, interests: everything that can hold an email,
  phone or name), its ranking rows, its timers, and its commands still waiting in the outbox
  (their `context` carries the profile);
- kept anonymously: stage history, enrollments and the message log, with the lead id replaced by
  a random `erased-<uuid>` (no hash: nothing links it back), so funnel conversions, program and
  per-step counts stay right; an enrollment still active ends (`exited`, reason `erased`);
- published (outbox, so never lost): `lead.erased` on `nurture.events.v1`, keyed by the lead id.

`lead.erased` is internal: it is not in `schemas.EVENT_TYPES`, so ingest refuses it from
clients. It travels in the lead's partition behind every earlier event of the lead, so each
consumer that erases when the event reaches it has processed (and now forgets) everything that
came before: scoring deletes the lead's table key (a tombstone in the compacted changelog),
dispatch scrubs its deliveries, and the orchestrator, seeing it come back scored, erases again
what arrived in between. Events of the lead id that come later start a new, empty lead; PII
returns only with a new `crm.lead_upserted`. Erasing twice is harmless."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import case, delete, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.kafka.topics import Topics
from services.orchestrator.adapters import tables as t


async def erase(conn: AsyncConnection, *, lead_id: str, topics: Topics, now: float) -> bool:
    """Erase `lead_id` in this transaction; True if there was a lead row. (`lead.erased` for the
    other services is published by the caller: the API's erasure does, the consumer's not.)"""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": lead_id})
    existed = (await conn.execute(delete(t.leads).where(t.leads.c.lead_id == lead_id)
                                  .returning(t.leads.c.lead_id))).first() is not None
    await conn.execute(delete(t.timers).where(t.timers.c.lead_id == lead_id))
    await conn.execute(delete(t.lead_scores).where(t.lead_scores.c.lead_id == lead_id))
    await conn.execute(delete(t.lead_links).where(  # the ids it absorbed, and its own link
        (t.lead_links.c.merged_into == lead_id) | (t.lead_links.c.lead_id == lead_id)))
    await conn.execute(delete(t.outbox).where(t.outbox.c.key == lead_id.encode(),
                                              t.outbox.c.topic == topics.dispatch))
    alias, at = f"erased-{uuid.uuid4().hex}", datetime.fromtimestamp(now, UTC)
    for table in (t.stage_history, t.messages):
        await conn.execute(update(table).where(table.c.lead_id == lead_id).values(lead_id=alias))
    e = t.enrollments  # an active one ends here (its timers are gone): exited, reason `erased`
    active = e.c.status == "active"
    await conn.execute(update(e).where(e.c.lead_id == lead_id).values(
        lead_id=alias, status=case((active, "exited"), else_=e.c.status),
        exit_reason=case((active, "erased"), else_=e.c.exit_reason),
        exited_at=case((active, at), else_=e.c.exited_at)))
    return existed
