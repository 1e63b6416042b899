"""Per-lead scoring state, as kept in the faust table (one entry per lead id).

Mutable and slotted on purpose: the engine updates it in place on the hot path (a backtest scores
100k+ events/s). Serialization is compact JSON (`to_bytes` / `from_bytes`), stable across versions:
unknown keys are ignored, missing keys default."""

from __future__ import annotations

from typing import Any

import orjson


class ModelState:
    """One lead's standing in one scoring model."""

    __slots__ = ("caps", "engagement", "fit", "fit_points", "interests", "journey", "total",
                 "version")

    def __init__(self) -> None:
        self.version: int | None = None
        self.fit: float = 0.0
        self.fit_points: dict[str, float] = {}
        # rule id -> [value at as_of, as_of (epoch seconds)]; decays continuously after as_of
        self.engagement: dict[str, list[float]] = {}
        # rule id -> {window index: points awarded in that window (absolute)}
        self.caps: dict[str, dict[int, float]] = {}
        self.total: float | None = None  # the total last reported
        self.interests: dict[str, int] = {}
        self.journey: dict[str, float] = {}  # stage -> newest event time showing it

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.version, "f": self.fit, "fp": self.fit_points, "e": self.engagement,
            "c": {rule: [[w, pts] for w, pts in windows.items()]
                  for rule, windows in self.caps.items()},
            "t": self.total, "i": self.interests, "j": self.journey,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelState:
        state = cls()
        state.version = raw.get("v")
        state.fit = float(raw.get("f", 0.0))
        state.fit_points = dict(raw.get("fp", {}))
        state.engagement = {k: list(v) for k, v in raw.get("e", {}).items()}
        state.caps = {rule: {int(w): float(p) for w, p in windows}
                      for rule, windows in raw.get("c", {}).items()}
        state.total = raw.get("t")
        state.interests = dict(raw.get("i", {}))
        state.journey = dict(raw.get("j", {}))
        return state


class LeadState:
    """Everything the scorer remembers about one lead, across all models."""

    __slots__ = ("last_time", "merged", "merged_into", "models", "profile", "profile_time",
                 "seen")

    def __init__(self) -> None:
        # recently seen event keys (hashes of source + id), oldest first; a bounded dedupe window
        self.seen: dict[int, None] = {}
        self.profile: dict[str, Any] = {}  # flattened: "consent.email", "attributes.budget"
        self.profile_time: dict[str, float] = {}  # field -> event time of its value
        self.last_time: float | None = None  # newest event time seen: the lead's "now"
        self.models: dict[str, ModelState] = {}
        # identity (docs/identity.md): the ids whose state this lead absorbed, in order; and,
        # for an id linked to a lead, that lead (its events go there; its state stays, so a
        # link seen again can hand it over again, and the absorbing lead takes it once)
        self.merged: dict[str, None] = {}
        self.merged_into: str | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": list(self.seen), "p": self.profile, "pt": self.profile_time,
            "lt": self.last_time, "m": {k: m.to_dict() for k, m in self.models.items()},
            **({"ma": list(self.merged)} if self.merged else {}),
            **({"mi": self.merged_into} if self.merged_into is not None else {}),
        }

    @classmethod
    def from_bytes(cls, raw: bytes) -> LeadState:
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LeadState:
        state = cls()
        state.seen = dict.fromkeys(doc.get("s", []))
        state.profile = doc.get("p", {})
        state.profile_time = doc.get("pt", {})
        state.last_time = doc.get("lt")
        state.models = {k: ModelState.from_dict(v) for k, v in doc.get("m", {}).items()}
        state.merged = dict.fromkeys(doc.get("ma", []))
        state.merged_into = doc.get("mi")
        return state
