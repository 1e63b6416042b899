"""`nurture.scored-events.v1`: each event with the lead's score right after it, from scoring to the
orchestrator. Scores are explained: every model's total comes with its fit and engagement parts,
the rules that gave the points and the thresholds crossed by this event."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
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
    kind: Literal["fit", "engagement"] | None = Field(
        default=None, description="fit points stay, engagement points decay (None: written "
                                  "before the kinds were told apart)")


class ScheduledCrossing(BaseModel):
    """The threshold the score will cross next by decay alone, and when: no event needed. A
    later event moves or cancels it (its scored event says what comes next instead)."""

    model_config = _FROZEN
    threshold: str
    direction: Literal["up", "down"]
    at: Timestamp


def decayed(points: float, half_life: float, seconds: float) -> float:
    """What engagement `points` are worth `seconds` later: they halve every `half_life`."""
    return points * math.pow(2.0, -seconds / half_life)


def crossing_time(fit: float, engagement: float, half_life: float, threshold: float,
                  as_of: float) -> float | None:
    """When decay alone takes `fit + engagement` (as of `as_of`) across `threshold`: the
    engagement fades towards 0, so the total moves towards `fit`. None if it never does."""
    gap = threshold - fit  # the engagement the total has at the threshold
    if abs(gap) < 0.005:  # the fit itself is at the threshold, to the cent: no crossing to tell
        return None
    falls = 0.0 < gap <= engagement  # at or above it now (`above`), below it later
    rises = engagement < gap < 0.0  # below it now, at it later
    if not (falls or rises):
        return None
    return as_of + half_life * math.log2(engagement / gap)


def next_crossing(fit: float, engagement: float, half_life: float,
                  thresholds: Mapping[str, float], as_of: float) -> tuple[str, str, float] | None:
    """(threshold, direction, time) of the first threshold decay crosses after `as_of`, or
    None: positive engagement falls through the thresholds above the fit, negative engagement
    rises through the ones below it. The time is the first whole second past the crossing
    (the score is then across, not on, the threshold, and the time is exact in any format)."""
    times = [(at, name) for name, value in thresholds.items()
             if (at := crossing_time(fit, engagement, half_life, value, as_of)) is not None]
    if not times:
        return None
    at, name = min(times)
    return name, "down" if engagement > 0.0 else "up", float(math.floor(at) + 1)


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
    half_life: float | None = Field(default=None, description="seconds in which engagement "
                                    "halves (None: written before scores said so)")
    thresholds: dict[str, float] = Field(default_factory=dict, description="the model's "
                                         "thresholds, by name")
    next_crossing: ScheduledCrossing | None = Field(
        default=None, description="the threshold decay alone crosses next, and when")

    def aged(self, seconds: float) -> ModelScore:
        """This score `seconds` later with no event in between: engagement (and each
        engagement rule's points) decayed, fit as it was, `above` recomputed; nothing crossed
        (a crossing by decay comes as an event of its own, `next_crossing`)."""
        if self.half_life is None or seconds <= 0.0:
            return self
        engagement = decayed(self.engagement, self.half_life, seconds)
        total = self.fit + engagement
        breakdown = sorted(
            (c if c.kind != "engagement" else c.model_copy(
                update={"points": round(decayed(c.points, self.half_life, seconds), 2)})
             for c in self.breakdown), key=lambda c: -abs(c.points))
        return self.model_copy(update={
            "engagement": round(engagement, 2), "total": round(total, 2),
            "previous_total": self.total, "crossed": (),
            "above": tuple(n for n, at in self.thresholds.items() if total >= at),
            "breakdown": tuple(c for c in breakdown if abs(c.points) >= 0.005)})


class LeadScore(BaseModel):
    """The lead's scores as of `as_of` (the event's time). `duplicate` means the event was seen
    before: the scores are repeated, nothing changed. No models for a `lead.erased` event."""

    model_config = _FROZEN
    lead_id: str
    as_of: Timestamp
    duplicate: bool = False
    models: dict[str, ModelScore] = Field(default_factory=dict)

    def at(self, when: datetime) -> LeadScore:
        """The scores as of `when` (no earlier than `as_of`), decayed (`ModelScore.aged`)."""
        seconds = (when - self.as_of).total_seconds()
        if seconds <= 0.0:
            return self
        return self.model_copy(update={"as_of": when, "models": {
            name: score.aged(seconds) for name, score in self.models.items()}})


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
