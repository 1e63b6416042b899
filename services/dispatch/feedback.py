"""Following `nurture.events.v1` for suppressions: unsubscribes, complaints, hard bounces and
SMS opt-outs recorded by ingest reach dispatch's suppression table directly, so a message
already queued or waiting for a retry is not sent after the lead said stop (see
domain/suppressions.py). Every other event is skipped, by its `ce_type` header when it has one,
without parsing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dispatch.adapters import erasure
from services.dispatch.adapters import repository as repo
from services.dispatch.domain.suppressions import INTERESTING, Change, changes_of, latest


def suppression_changes(records: Sequence[ConsumerRecord[bytes, bytes]], *,
                        now: datetime) -> list[Change]:
    """The suppression changes in a batch of event records, one per lead and channel."""
    found: list[Change] = []
    for record in records:
        header = dict(record.headers or ()).get("ce_type")
        if header is not None and header.decode(errors="replace") not in INTERESTING:
            continue
        try:
            event = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            continue  # ingest validated what it published; anything else is not for us
        if isinstance(event, dict) and event.get("type") in INTERESTING:
            found += changes_of(event, now=now)
    return latest(found)


async def record_suppressions(engine: AsyncEngine,
                              records: Sequence[ConsumerRecord[bytes, bytes]], *,
                              now: datetime) -> int:
    """Apply the batch's suppression changes in one transaction; how many."""
    changes = suppression_changes(records, now=now)
    erased = erasure.erased_leads(records)
    if changes or erased:
        async with engine.begin() as conn:
            if changes:
                await repo.apply_suppressions(conn, changes=changes)
            await erasure.erase(conn, lead_ids=erased, now=now)
    return len(changes)
