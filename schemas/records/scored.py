"""`nurture.scored-events.v1`: each event with the lead's score right after it, from scoring to the
orchestrator. Scores are explained: every model's total comes with its fit and engagement parts,
the rules that gave the points and the thresholds crossed by this event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.cloudevent import require_key_attributes
from schemas.records.base import Record, Timestamp
from schemas.registry import ENVELOPE_ID
from schemas.vocabulary import dedupe_key, event_epoch

_FROZEN = ConfigDict(frozen=True)


class Crossing(BaseModel):
    """A threshold this event crossed: `up` when previous < threshold <= new, `down` when
    new < threshold <= previous."""

    model_config = _FROZEN
    threshold: str
    direction: Literal["up", "down"]
    score: float


class Contribution(BaseModel):
    """The points one rule contributes to the total now (after decay)."""

    model_config = _FROZEN
    rule: str
    points: float


class ModelScore(BaseModel):
    """One scoring model's view of the lead after the event."""

    model_config = _FROZEN
    model: str
    version: int
    fit: float
    engagement: float
    total: float
    previous_total: float | None
    crossed: tuple[Crossing, ...] = ()
    above: tuple[str, ...] = Field(default=(), description="thresholds the total is at or above")
    breakdown: tuple[Contribution, ...] = Field(default=(), description="largest first")
    interests: tuple[str, ...] = ()
    journey_stage: str | None = None
    late: bool = Field(default=False, description="the event came after newer ones (decayed "
                                                  "as of its own time, not folded into the "
                                                  "current state)")


class LeadScore(BaseModel):
    """The lead's scores as of `as_of` (the event's time). `duplicate` means the event was seen
    before: the scores are repeated, nothing changed. No models for a `lead.erased` event."""

    model_config = _FROZEN
    lead_id: str
    as_of: Timestamp
    duplicate: bool = False
    models: dict[str, ModelScore] = Field(default_factory=dict)


class ScoredEvent(Record):
    """The event as scoring consumed it (a CloudEvent in structured JSON, extensions kept) and the
    lead's score after it. Keyed by the lead id (the event's `subject`)."""

    TOPIC: ClassVar[str] = "nurture.scored-events.v1"

    event: dict[str, Any] = Field(json_schema_extra={"$ref": ENVELOPE_ID})
    score: LeadScore

    @field_validator("event")
    @classmethod
    def _envelope(cls, event: dict[str, Any]) -> dict[str, Any]:
        # the attributes consumers key on; scoring validated the rest against the schemas
        return require_key_attributes(event)

    @classmethod
    def encode(cls, event: Mapping[str, Any], score: Mapping[str, Any]) -> bytes:
        """The record value of a ScoredEvent of `event` and `score` (a LeadScore as a JSON-ready
        dict, `as_of` written by `rfc3339`), without building the nested models: the hot path
        of scoring, where validating them per event would cost about three times the encoding.
        The same bytes `ScoredEvent(event=..., score=...).to_bytes()` writes (tested)."""
        return orjson.dumps({"version": 1, "event": event, "score": score})

    @property
    def lead_id(self) -> str:
        """The lead the event is about (the CloudEvent `subject`)."""
        return str(self.event["subject"])

    @property
    def event_type(self) -> str:
        return str(self.event["type"])

    @property
    def dedupe_key(self) -> str:
        """What makes the event unique: its source and id."""
        return dedupe_key(self.event["source"], self.event["id"])

    def event_epoch(self) -> float | None:
        """The event time in epoch seconds; None when absent or unusable."""
        try:
            return event_epoch(self.event.get("time"))
        except ValueError:
            return None
