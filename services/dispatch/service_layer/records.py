"""What the handlers write to the outbox and to the log: outcome events (`message.sent`,
`message.failed`, `message.suppressed` on `nurture.events.v1`), dead letters (with the original
command), the PII-free fields of a decision log line, and the records they are handed."""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from schemas.bindings import record_headers
from schemas.records import SendMessage
from services.common.db.outbox import Outgoing
from services.common.kafka.deadletter import Origin, dead_letter
from services.common.kafka.loops import ConsumedRecord
from services.common.kafka.topics import Topics
from services.common.observability.logging import lead_hash
from services.dispatch.domain.errors import DispatchError, ProviderUnavailable
from services.dispatch.domain.outcomes import Result, outcome_event

log = logging.getLogger(__name__)
CONSUMER = "nurture-dispatch"
UNCONFIRMED = "sent_unconfirmed"
MALFORMED = "not a dispatch command"  # how the dead letter of an unreadable one starts
# failures after the hand-off that leave open whether the provider took the message
AMBIGUOUS_FAILURES = frozenset({"timeout", "connection_failed", "attempt_crashed"})


Record = ConsumedRecord
"""A consumed record (services/common/kafka/loops.py)."""


def outcome_record(topics: Topics, cmd: SendMessage, result: Result, now: datetime) -> Outgoing:
    """The outbox record of the outcome event reporting `result` for `cmd`."""
    event = outcome_event(cmd, result, now=now)
    return Outgoing(topics.events, cmd.lead_id.encode(), orjson.dumps(event),
                    record_headers(event["type"]))


def dead_letter_record(topics: Topics, key: bytes | None, value: bytes | None, origin: Origin,
                       error: str, now: datetime) -> Outgoing:
    """The outbox record of a dead letter of dispatch's consumer."""
    k, v, headers = dead_letter(key=key, value=value, origin=origin, error=error,
                                consumer=CONSUMER, failed_at=now)
    return Outgoing(topics.deadletter, k, v, [(name, raw.decode()) for name, raw in headers])


def as_dispatch_error(exc: Exception, cmd: SendMessage) -> DispatchError:
    """A provider call's failure as a DispatchError: adapters raise those; anything else (a
    bug, the database during the hand-off write) is logged and retried like an outage, so the
    attempt budget still ends it."""
    if isinstance(exc, DispatchError):
        return exc
    log.error("delivery attempt crashed", exc_info=exc, extra=fields(cmd))
    return ProviderUnavailable("attempt_crashed", type(exc).__name__)


def fields(cmd: SendMessage) -> dict[str, object]:
    """What a decision log line says about a message (no raw lead id, no address)."""
    return {"message_id": cmd.message_id, "event_id": cmd.event_id,
            "lead_hash": lead_hash(cmd.lead_id), "program": cmd.program_id,
            "step": cmd.step_id, "channel": cmd.channel}
