"""The words every service shares, defined once: channels, suppression reasons, the erasure
marker, the dedupe key of an event, and event time (parsed and formatted one way everywhere).

Event time is RFC 3339 with an offset; an event dated before 2000 or after 2100 is not usable (and
would break date arithmetic), so it is refused here rather than deep inside a consumer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from schemas.formats import parse_rfc3339

Channel = Literal["email", "sms", "crm_task", "webhook"]
"""A delivery channel of a dispatch command and of the `message.*` events."""
CHANNELS: Final[tuple[Channel, ...]] = get_args(Channel)
ALL_CHANNELS: Final = "*"
"""The channel of a suppression that holds for every channel (an erased lead)."""
PERSON_CHANNELS: Final = frozenset({"email", "sms"})
"""Channels that reach the person (consent and suppressions apply); CRM tasks and webhooks
reach the sales team or a system."""

ERASED_EVENT: Final = "lead.erased"
"""The type of the control event the orchestrator publishes when a person is erased
(docs/security.md); every consumer forgets the lead when it sees one."""

SCORE_DUE_EVENT: Final = "lead.score_due"
"""The type of the control event the orchestrator publishes when a lead's score is due to cross a
threshold by decay alone (the scored event's `next_crossing`): scoring scores the lead as of the
event's time, with no points awarded, and the crossing comes out like any other."""
LINKED_EVENT: Final = "identity.linked"
"""The type of the event saying its subject (an anonymous id, a lead merged away) is the lead
`data.lead_id` (docs/identity.md); keyed by the subject, behind the subject's own events."""

PAGE_LINKS: Final = frozenset({"identify", "alias", "form"})
"""The `via` of a link a web page makes (its visitor's anonymous id to the id it names): a
browser key may make only these, and they only ever fold an anonymous visitor into a lead, never
a known one (a CRM merge, `crm_merge`, or a server's link, `api`, may)."""

MERGED_EVENT: Final = "lead.merged"
"""The type of the control event scoring publishes, keyed by the lead that absorbs another, when
it has taken over the other's scoring state (`data.from`: the absorbed id); scored, it tells the
orchestrator to fold the absorbed lead's record into this one (docs/identity.md)."""
CONTROL_EVENTS: Final = frozenset({ERASED_EVENT, SCORE_DUE_EVENT, MERGED_EVENT})
"""Control events: what Nurture's services tell each other (never accepted from outside)."""
OUTCOME_EVENTS: Final = frozenset({"message.sent", "message.failed", "message.suppressed"})
"""What dispatch reports about its own deliveries (`services/dispatch/domain/outcomes.py`)."""
NURTURE_ONLY_EVENTS: Final = CONTROL_EVENTS | OUTCOME_EVENTS
"""Event types only Nurture's own services publish: ingest refuses them from every API key,
whatever its `types` patterns say."""

SuppressionReason = Literal["unsubscribed", "complained", "opted_out", "hard_bounce", "erased"]
"""Why a channel is suppressed for a lead; the same words in the orchestrator's lead state and in
dispatch's suppression table. `erased` is only ever set on `ALL_CHANNELS`."""
SUPPRESSION_REASONS: Final[tuple[SuppressionReason, ...]] = get_args(SuppressionReason)
ERASED: Final[SuppressionReason] = "erased"

SUPPRESSING: Final[Mapping[str, tuple[Channel, SuppressionReason]]] = MappingProxyType({
    "email.unsubscribed": ("email", "unsubscribed"),
    "email.complained": ("email", "complained"),
    "sms.opted_out": ("sms", "opted_out"),
})
"""Event types that always suppress a channel, with the reason; a hard bounce does too (see
`suppression_of`)."""

LIFTED_BY_CONSENT: Final[Mapping[Channel, SuppressionReason]] = MappingProxyType({
    "email": "unsubscribed", "sms": "opted_out"})
"""Per channel, the suppression a later consent (`crm.lead_upserted` granting it, a START by
SMS) lifts; never a complaint, a hard bounce or an erasure."""

_LEGACY_REASONS: Final = MappingProxyType(
    {"complaint": "complained", "opted out": "opted_out", "hard bounce": "hard_bounce"})


def suppression_of(event_type: str,
                   data: Mapping[str, Any]) -> tuple[Channel, SuppressionReason] | None:
    """The (channel, reason) an event suppresses, or None: an unsubscribe or a complaint suppresses
    email, an SMS opt-out SMS, a hard bounce email."""
    if event_type in SUPPRESSING:
        return SUPPRESSING[event_type]
    if event_type == "email.bounced" and data.get("bounce_type") == "hard":
        return ("email", "hard_bounce")
    return None


def canonical_reason(word: str) -> str:
    """A suppression reason as stored before the words were unified ("complaint", "opted out",
    "hard bounce") in today's word; other words unchanged."""
    return _LEGACY_REASONS.get(word, word)


def dedupe_key(source: str, event_id: str) -> str:
    """What identifies an event for idempotency: its `source` and `id` (CloudEvents), joined by
    the unit separator, which neither may usefully contain."""
    return f"{source}\x1f{event_id}"


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def event_epoch(value: object) -> float:
    """Epoch seconds of an RFC 3339 `time`; ValueError (saying why) for anything else."""
    if not isinstance(value, str):
        raise ValueError("'time' is not a string")
    try:
        epoch = parse_rfc3339(value).timestamp()
    except ValueError:
        raise ValueError("'time' is not an RFC 3339 date-time with a timezone") from None
    if not EARLIEST <= epoch < LATEST:
        raise ValueError("'time' is outside 2000-2099")
    return epoch


def rfc3339(epoch: float) -> str:
    """`2026-11-24T09:30:00.000Z` (UTC, milliseconds)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
