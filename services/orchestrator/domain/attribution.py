"""Which program and step sent a message, by its message id: email provider webhooks
(`email.delivered`, `email.bounced`, ...) carry only the message id, so the engagement metrics
look the sends up in the message log (`Leads.sends`: one set-based query per batch, on an
index). This module picks the message ids to look up (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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
