"""The records the orchestrator reads and writes on Kafka, as bytes: the scored events it
consumes (`parse`, through the `ScoredEvent` model, once per record), and the outbox rows it
produces: dispatch commands, stage changes and `lead.score_due` control events (`outbox_rows`),
dead letters, the `lead.erased` control event and the events of inbound SMS."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.bindings import record_headers
from schemas.cloudevent import new_event, score_due_event
from schemas.records import LeadScore, ScoredEvent, SendMessage, StageChanged
from schemas.vocabulary import ERASED_EVENT, SCORE_DUE_EVENT
from services.common.db.outbox import Outgoing
from services.common.kafka.deadletter import Origin, dead_letter, replayed
from services.common.kafka.loops import ConsumedRecord
from services.common.kafka.topics import Topics
from services.orchestrator.domain.effects import Command, Effects, ScoreDue, StageChange

CONSUMER = "nurture-orchestrator"
ERASURE_SOURCE = "nurture-orchestrator/erasure"


Record = ConsumedRecord
"""A consumed record (services/common/kafka/loops.py)."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """A consumed scored event, parsed once, with what the handler keys on."""

    key: str  # dedupe key: source + id
    lead_id: str
    event: dict[str, Any]
    score: LeadScore
    event_time: float | None
    record: Record

    @property
    def replayed(self) -> bool:
        """Put back from its dead letter (`nurture-dlq replay`)."""
        return replayed(self.record.headers)


def parse(record: Record) -> Parsed:
    """A scored event, or RecordError (a ValueError) naming the wrong fields, never values."""
    scored = ScoredEvent.from_bytes(record.value)
    return Parsed(scored.dedupe_key, scored.lead_id, scored.event, scored.score,
                  scored.event_epoch(), record)


def ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def dead_letter_row(record: Record, error: str, *, topics: Topics) -> Outgoing:
    key, value, headers = dead_letter(
        key=record.key, value=record.value, error=error, consumer=CONSUMER,
        origin=Origin(record.topic, record.partition, record.offset),
        failed_at=datetime.now(UTC), headers=list(record.headers or ()))
    return Outgoing(topics.deadletter, key, value, [(k, v.decode()) for k, v in headers])


def send_message(lead_id: str, cmd: Command) -> SendMessage:
    """The one place a decision's `Command` becomes the dispatch command record."""
    return SendMessage(
        message_id=cmd.message_id, lead_id=lead_id, channel=cmd.channel,
        template=cmd.template, program_id=cmd.program_id, program_version=cmd.program_version,
        step_id=cmd.step_id, context=cmd.context, created_at=ts(cmd.created_at),
        expires_at=ts(cmd.expires_at), subject=cmd.subject, due_at=ts(cmd.due_at),
        event_time=ts(cmd.event_time), event_id=cmd.event_id)


def stage_changed(lead_id: str, change: StageChange) -> StageChanged:
    return StageChanged(lead_id=lead_id, from_stage=change.from_stage,
                        to_stage=change.to_stage, at=ts(change.at), cause=change.cause)


def outbox_rows(lead_id: str, fx: Effects, topics: Topics) -> list[Outgoing]:
    """The dispatch commands, stage changes and scores due of one decision."""
    key, headers = lead_id.encode(), [("content-type", "application/json")]
    return [*(Outgoing(topics.dispatch, key, send_message(lead_id, cmd).to_bytes(), headers)
              for cmd in fx.commands),
            *(Outgoing(topics.stages, key, stage_changed(lead_id, c).to_bytes(), headers)
              for c in fx.stage_changes),
            *(score_due_row(lead_id, due, topics.events) for due in fx.scores_due)]


def score_due_row(lead_id: str, due: ScoreDue, topic: str) -> Outgoing:
    """`schemas.cloudevent.score_due_event` as an outbox row for `nurture.events.v1`, keyed by
    the lead, timed at the crossing."""
    event = score_due_event(lead_id, due.model, due.at)
    return Outgoing(topic, lead_id.encode(), orjson.dumps(event), record_headers(SCORE_DUE_EVENT))


def erased_event(lead_id: str, *, topic: str, now: float) -> Outgoing:
    """The control event; its id is new each time (each erasure is an act of its own)."""
    event = new_event(id=f"erase-{uuid.uuid4().hex}", source=ERASURE_SOURCE,
                      type=ERASED_EVENT, subject=lead_id, time=now, data={})
    return Outgoing(topic, lead_id.encode(), orjson.dumps(event), record_headers(ERASED_EVENT))


def event_rows(events: Iterable[dict[str, Any]], topics: Topics) -> list[Outgoing]:
    """CloudEvents the orchestrator originates (inbound SMS), for `nurture.events.v1`."""
    return [Outgoing(topics.events, e["subject"].encode(), orjson.dumps(e),
                     record_headers(e["type"])) for e in events]
