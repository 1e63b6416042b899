"""Delivery records (one per message id) as the service layer sees them, whichever store keeps
them (adapters/repository.py in PostgreSQL, adapters/memory.py in memory)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

STATUSES = ("pending", "sending", "sent", "failed", "suppressed", "expired")
FINAL_STATUSES = ("sent", "failed", "suppressed", "expired")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A command to record as a pending delivery, with where it was read."""

    message_id: str
    lead_id: str
    channel: str
    payload: bytes
    origin_topic: str
    origin_partition: int
    origin_offset: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery row as the handlers see it."""

    message_id: str
    lead_id: str
    channel: str
    status: str
    attempts: int
    payload: bytes | None
    origin_topic: str
    origin_partition: int
    origin_offset: int
    last_error: str | None = None
    provider_id: str | None = None
    lease: datetime | None = None  # set by `claim_due`: this claim's fencing token
