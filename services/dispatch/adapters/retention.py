"""What dispatch forgets once it is older than `NURTURE_DISPATCH_RETENTION_DAYS`
(services.common.db.retention runs it): deliveries in a final status. A final delivery only
serves as the dedupe mark of its message id (a redelivered command finds it and changes
nothing) and as history; its command was already cleared when it became final.

Kept: deliveries still `pending` or `sending` (work in progress), the suppression list (consent,
complaints, bounces and erasures: state that must outlive any message), and parked outbox rows
(records Kafka refused: the only copy, waiting for an operator; the parked-records alert fires
while there is one)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, literal

from services.common.db.retention import Rule
from services.dispatch.adapters import tables as t


def _final_before(cutoff: datetime) -> ColumnElement[bool]:
    d = t.deliveries.c
    # the statuses inline, not as parameters: the planner then matches the partial index
    # `deliveries_final` (migration 0003) in a prepared statement's generic plan too
    final = [literal(status, literal_execute=True) for status in t.FINAL_STATUSES]
    return and_(d.status.in_(final), d.updated_at < cutoff)


RULES = (Rule("deliveries", t.deliveries, _final_before),)
