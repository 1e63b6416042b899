"""Which events suppress a channel for a lead, and which lift that again (pure).

Dispatch follows `nurture.events.v1` for these so its last check before sending knows about an
unsubscribe the moment ingest recorded it, before the orchestrator has caught up. The rules
mirror the orchestrator's: an unsubscribe, a complaint or a hard bounce suppresses email, an
SMS opt-out suppresses SMS; a CRM profile that grants consent for a channel lifts it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SUPPRESSING = {"email.unsubscribed": ("email", "unsubscribed"),
               "email.complained": ("email", "complained"),
               "sms.opted_out": ("sms", "opted_out")}
INTERESTING = frozenset({*SUPPRESSING, "email.bounced", "crm.lead_upserted"})
"""The event types that can change a suppression (others are skipped unparsed)."""
LIFTABLE = ("unsubscribed", "opted_out")
"""The reasons a later consent lifts (never a complaint, a hard bounce or an erasure)."""
ERASED_REASON = "erased"
"""The reason of the all-channel suppression an erasure records (never lifted by consent).
A stored suppression reason, not the `lead.erased` event type."""


@dataclass(frozen=True, slots=True)
class Change:
    """Suppress `channel` for the lead with `reason`, or lift it (`reason` None), as of `at`."""

    lead_id: str
    channel: str
    reason: str | None
    at: datetime


def changes_of(event: Mapping[str, Any], *, now: datetime) -> list[Change]:
    """The suppression changes one CloudEvent asks for ([] for most events)."""
    etype, lead, data = event.get("type"), event.get("subject"), event.get("data")
    if not isinstance(lead, str) or not lead or not isinstance(data, Mapping):
        return []
    at = _time(event.get("time")) or now
    if etype in SUPPRESSING:
        channel, reason = SUPPRESSING[etype]
        return [Change(lead, channel, reason, at)]
    if etype == "email.bounced" and data.get("bounce_type") == "hard":
        return [Change(lead, "email", "hard_bounce", at)]
    consent = data.get("consent") if etype == "crm.lead_upserted" else None
    if isinstance(consent, Mapping):
        return [Change(lead, channel, None, at) for channel in ("email", "sms")
                if consent.get(channel) == "granted"]
    return []


def latest(changes: Iterable[Change]) -> list[Change]:
    """One change per lead and channel: the one with the latest time (the last one on ties)."""
    last: dict[tuple[str, str], Change] = {}
    for change in changes:
        key = (change.lead_id, change.channel)
        if key not in last or change.at >= last[key].at:
            last[key] = change
    return list(last.values())


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
