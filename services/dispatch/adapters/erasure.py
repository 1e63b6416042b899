"""Erasure in dispatch: on `lead.erased` (published by the orchestrator, docs/security.md)
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

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.vocabulary import ALL_CHANNELS, ERASED
from services.dispatch.adapters import repository as repo
from services.dispatch.adapters import tables as t


async def erase(conn: AsyncConnection, *, lead_ids: Sequence[str], now: datetime) -> int:
    """Suppress `lead_ids` on every channel and scrub their deliveries; how many rows changed."""
    d = t.deliveries
    changed = 0
    for lead_id in lead_ids:
        # lock every row of the lead, `sending` ones too: an attempt finishing concurrently
        # then commits either before this (and is scrubbed below) or after it (and sees the
        # suppression when it scrubs itself)
        await conn.execute(select(d.c.message_id).where(d.c.lead_id == lead_id)
                           .order_by(d.c.message_id).with_for_update())
        await repo.suppress(conn, lead_id=lead_id, channel=ALL_CHANNELS, reason=ERASED,
                            at=now)
        changed += await repo.scrub_erased(conn, lead_id=lead_id, now=now)
    return changed
