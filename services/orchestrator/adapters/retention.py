"""What the orchestrator forgets once it is older than `NURTURE_ORCHESTRATOR_RETENTION_DAYS`
(services.common.db.retention runs it): processed-event marks, including the marks of events whose
decision failed. A mark only dedupes a redelivered scored event; once the topic no longer holds
the record (and a replayed dead letter has been decided), nothing asks for it.

Kept (each read by the decisions, the API or the reports, or removing itself already):
- leads, enrollments, stage_history and messages: the lead's state and the history the API
  (`GET /v1/leads/{id}`), the program stats, the funnel and the engagement attribution of
  provider events (message id -> program and step) read. `messages` grows with sends, not with
  events; erasure anonymises all four.
- timers: a timer row is deleted when it fires (or its lead is erased), so only future work
  is there.
- outbox: a row is deleted once Kafka acknowledged it; a parked one (Kafka refused it) is the
  only copy of its record and waits for an operator.
- clock: one row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement

from services.common.db.retention import Rule
from services.orchestrator.adapters import tables as t


def _marked_before(cutoff: datetime) -> ColumnElement[bool]:
    return t.processed_events.c.processed_at < cutoff


RULES = (Rule("processed_events", t.processed_events, _marked_before),)
