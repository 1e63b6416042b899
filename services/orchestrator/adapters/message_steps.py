"""Which program and step sent a message, by its message id: email provider webhooks
(`email.delivered`, `email.bounced`, ...) carry only the message id, so the engagement metrics
look the sends up in the `messages` table (one set-based query per batch, on an index)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.orchestrator.adapters import tables as t

FAMILIES = ("email.", "sms.", "message.")


def unattributed(events: Iterable[Mapping[str, Any]]) -> set[str]:
    """Message ids of delivery and engagement events that do not say their program."""
    ids = set()
    for event in events:
        data = event.get("data")
        if not str(event.get("type", "")).startswith(FAMILIES) or not isinstance(data, Mapping):
            continue
        mid = data.get("message_id")
        if isinstance(mid, str) and mid and not isinstance(data.get("program_id"), str):
            ids.add(mid)
    return ids


async def message_steps(conn: AsyncConnection,
                        events: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """message id → (program id, step id) of the sends the events name without a program."""
    ids = unattributed(events)
    if not ids:
        return {}
    m = t.messages.c
    rows = await conn.execute(select(m.message_id, m.program_id, m.step_id).where(
        m.message_id.in_(sorted(ids)), m.status == "sent"))
    return {str(r.message_id): (str(r.program_id), str(r.step_id)) for r in rows}
