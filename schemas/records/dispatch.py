"""`nurture.dispatch.v1`: the orchestrator's commands to dispatch."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from schemas.records.base import Record, Timestamp
from schemas.vocabulary import Channel

_ID = r"^[^\x00-\x1F\x7F]+$"


class SendMessage(Record):
    """Deliver one message. `message_id` is deterministic (enrollment + step + attempt window),
    so the same command delivered twice is the same message. `context` is the lead's profile
    snapshot (first_name, email, phone, owner_id, scores, ...); `subject` and `due_at` are set
    for CRM tasks; a message past `expires_at` is not sent. Keyed by the lead id."""

    TOPIC: ClassVar[str] = "nurture.dispatch.v1"

    message_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    lead_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    channel: Channel
    template: str | None = Field(default=None, min_length=1, max_length=200)
    program_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    program_version: int | None = None
    step_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    context: dict[str, Any] = Field(default_factory=dict)
    created_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    subject: str | None = None
    due_at: Timestamp | None = None
    event_time: Timestamp | None = Field(
        default=None, description="of the triggering event, when there was one")
    event_id: str | None = Field(
        default=None, description="that event's id (for the logs; never a reason to refuse)")
