"""A scoring model, as the engine uses it: frozen, validated, conditions compiled to predicates.

Built from a YAML file by `services.scoring.adapters.model_files` (which reports errors with file,
line and path); the engine never sees raw configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.config.conditions import Predicate, always

JOURNEY_STAGES = ("awareness", "consideration", "decision")


@dataclass(frozen=True, slots=True)
class FitRule:
    """Points for who the lead is; evaluated on the merged profile; never decays."""

    id: str
    points: float
    when: Predicate = always
    description: str = ""


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `points` (in absolute value) awarded by one rule per tumbling window of
    `window_seconds` in event time; windows align to the Unix epoch (days start at UTC midnight)."""

    points: float
    window_seconds: int


@dataclass(frozen=True, slots=True)
class EngagementRule:
    """Points for what the lead did: an event of one of `on` types whose data satisfies `when`."""

    id: str
    on: frozenset[str]
    points: float
    when: Predicate = always
    cap: Cap | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class JourneyRule:
    """Evidence that the lead is at `stage` (awareness / consideration / decision)."""

    stage: str
    on: frozenset[str]
    when: Predicate = always


@dataclass(frozen=True, slots=True)
class ScoringModel:
    id: str
    version: int
    half_life_days: float
    thresholds: Mapping[str, float]
    fit: tuple[FitRule, ...] = ()
    engagement: tuple[EngagementRule, ...] = ()
    engagement_max: float | None = None
    engagement_min: float | None = None
    late_tolerance_days: float = 7.0
    interest_on: frozenset[str] = frozenset()
    interest_fields: tuple[str, ...] = ("content_topics",)
    journey: tuple[JourneyRule, ...] = ()
    journey_window_days: float = 90.0
    description: str = ""
    # derived: engagement rules by event type, so an event only meets the rules that can match it
    rules_by_type: Mapping[str, tuple[EngagementRule, ...]] = field(default_factory=dict)
    # derived: thresholds in ascending order of score
    ordered_thresholds: tuple[tuple[str, float], ...] = ()
    # derived: rule id -> its cap, for the rules that have one
    caps: Mapping[str, Cap] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[str, list[EngagementRule]] = {}
        for rule in self.engagement:
            for etype in rule.on:
                index.setdefault(etype, []).append(rule)
        object.__setattr__(self, "rules_by_type", {k: tuple(v) for k, v in index.items()})
        object.__setattr__(self, "ordered_thresholds",
                           tuple(sorted(self.thresholds.items(), key=lambda kv: kv[1])))
        object.__setattr__(self, "caps", {r.id: r.cap for r in self.engagement if r.cap})

    @property
    def engagement_ids(self) -> frozenset[str]:
        """The ids of the engagement rules (points of others are dropped on a version change)."""
        return frozenset(r.id for r in self.engagement)

    @property
    def half_life_seconds(self) -> float:
        return self.half_life_days * 86400.0
