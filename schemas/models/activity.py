"""Models for product.* and message.* event data (mirror data/product.*, data/message.*)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from pydantic import StringConstraints as S

from schemas.models.base import EventData, Identifier, PositiveInt, Text
from schemas.vocabulary import Channel

Reason = Annotated[str, S(min_length=1, max_length=500)]


class ProductActivity(EventData):
    """product.activity: the lead did something in the product (customer nurturing)."""

    action: Identifier
    feature: Text | None = None
    count: PositiveInt | None = None
    properties: Annotated[dict[str, Any], Field(max_length=100)] | None = None


class MessageOutcome(EventData):
    """Common fields of message.* events, emitted by Nurture's dispatch service."""

    message_id: Identifier
    channel: Channel
    program_id: Identifier | None = None
    step_id: Identifier | None = None
    template_id: Identifier | None = None
    attempt: PositiveInt | None = None


class MessageSent(MessageOutcome):
    """message.sent: dispatch handed the message to the provider."""

    provider_message_id: Reason | None = None


class MessageFailed(MessageOutcome):
    """message.failed: this delivery attempt failed."""

    reason: Reason
    retryable: bool | None = None


class MessageSuppressed(MessageOutcome):
    """message.suppressed: dispatch did not send the message on purpose."""

    reason: Reason
