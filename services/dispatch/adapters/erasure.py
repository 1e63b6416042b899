"""Erasure in dispatch: on `lead.erased` (published by the orchestrator, docs/security.md) the
lead's deliveries lose everything that can hold PII — the raw command (its `context` carries the
profile) and the provider's last error text (it may quote an address) — and are re-keyed to a
random `erased-<uuid>`, so per-status counts stay right and nothing links back to the person.
Messages still waiting are not sent (`suppressed`). A delivery in the middle of its provider call
(`sending`) keeps its command until it finishes, which drops it anyway. Suppressions stay: they
hold the lead id only, and they are the record that the lead id must not be contacted."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dispatch.adapters import tables as t

ERASED = "lead.erased"


def erased_leads(records: Sequence[ConsumerRecord[bytes, bytes]]) -> list[str]:
    """The lead ids a batch of `nurture.events.v1` records erases."""
    found: list[str] = []
    for record in records:
        header = dict(record.headers or ()).get("ce_type")
        if header is not None and header != ERASED.encode():
            continue
        try:
            event = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("type") == ERASED \
                and isinstance(event.get("subject"), str):
            found.append(event["subject"])
    return sorted(set(found))


async def erase(conn: AsyncConnection, *, lead_ids: Sequence[str], now: datetime) -> int:
    """Scrub the deliveries of `lead_ids`; how many rows changed."""
    d = t.deliveries
    changed = 0
    for lead_id in lead_ids:
        result = await conn.execute(
            update(d).where(d.c.lead_id == lead_id, d.c.status != "sending").values(
                lead_id=f"erased-{uuid.uuid4().hex}", payload=None, last_error=None,
                next_attempt_at=None, updated_at=now,
                status=case((d.c.status == "pending", "suppressed"), else_=d.c.status)))
        changed += int(result.rowcount or 0)
    return changed
