"""Which events suppress a channel for a lead, and which lift that again (pure).

Dispatch follows `nurture.events.v1` for these so its last check before sending knows about an
unsubscribe the moment ingest recorded it, before the orchestrator has caught up. The rules
mirror the orchestrator's: an unsubscribe, a complaint or a hard bounce suppresses email, an
SMS opt-out suppresses SMS; a CRM profile that grants consent for a channel lifts it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.vocabulary import LIFTED_BY_CONSENT, SUPPRESSING, event_epoch, suppression_of

INTERESTING = frozenset({*SUPPRESSING, "email.bounced", "crm.lead_upserted"})
"""The event types that can change a suppression (others are skipped unparsed)."""
LIFTABLE = tuple(LIFTED_BY_CONSENT.values())
"""The reasons a later consent lifts (schemas.vocabulary.LIFTED_BY_CONSENT)."""


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
    suppressed = suppression_of(etype, data) if isinstance(etype, str) else None
    if suppressed is not None:
        return [Change(lead, suppressed[0], suppressed[1], at)]
    consent = data.get("consent") if etype == "crm.lead_upserted" else None
    if isinstance(consent, Mapping):
        return [Change(lead, channel, None, at) for channel in LIFTED_BY_CONSENT
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
    """The event time (`schemas.vocabulary.event_epoch`), or None when it has none usable."""
    try:
        return datetime.fromtimestamp(event_epoch(value), UTC)
    except ValueError:
        return None
