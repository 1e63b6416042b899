"""The dispatch command (`nurture.dispatch.v1`), as the orchestrator's outbox writes it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

Channel = Literal["email", "sms", "crm_task", "webhook"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "crm_task", "webhook")
_ID = r"^[^\x00-\x1F\x7F]+$"


class SendMessage(BaseModel):
    """Deliver one message. `message_id` is deterministic (enrollment + step + attempt window),
    so the same command delivered twice is the same message. `context` is the lead's profile
    snapshot (first_name, email, phone, owner_id, scores, ...); `subject` and `due_at` are set
    for CRM tasks; a message past `expires_at` is not sent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    message_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    lead_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    channel: Channel
    template: str | None = Field(default=None, min_length=1, max_length=200)
    program_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    program_version: int | None = None
    step_id: str = Field(min_length=1, max_length=200, pattern=_ID)
    context: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    subject: str | None = None
    due_at: AwareDatetime | None = None
    event_time: AwareDatetime | None = None  # of the triggering event, when there was one
    event_id: str | None = None  # that event's id (for the logs; never a reason to refuse)


class MalformedCommand(ValueError):
    """A record on the dispatch topic that is not a usable command (dead-lettered)."""


def parse_command(raw: bytes | None) -> SendMessage:
    """The command in a record value, or MalformedCommand saying why it is not one (field
    paths only: no values, which may be personal data)."""
    if not raw:
        raise MalformedCommand("empty record value")
    try:
        return SendMessage.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors(include_input=False)[:5])
        raise MalformedCommand(f"not a dispatch command: {problems}") from None
