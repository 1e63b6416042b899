"""The scoring engine: one event in, the lead's score snapshot out. Pure: no I/O, no clock (time is
the event's own), no randomness. It updates the caller's `LeadState` in place.

Semantics (also in the README):
- **Fit** is the sum of the fit rules matching the merged profile. Profile fields merge from
  `crm.lead_upserted` by event time: the newest value of each field wins, whatever the arrival
  order. Fit never decays.
- **Engagement** is the sum of engagement-rule points, each decaying continuously with the model's
  half-life in event time. Scores are reported as of the lead's newest event time; a late event
  is folded in with the decay it would have had, so arrival order does not change the sum.
  Events older than the newest by more than `late_tolerance` add no engagement (`late`).
- **Caps**: a rule with `cap` awards at most `cap.points` per tumbling window of event time
  (windows aligned to the Unix epoch: days start at UTC midnight). `engagement_cap` bounds the
  model's engagement: an award is cut so the sum stays within [min, max].
- **Thresholds** are crossed by comparing the new total with the total last reported for the lead
  (0 for a new lead): up when previous < threshold <= new, down when new < threshold <= previous.
- **Duplicates** (same `source` + `id` within the recent-id window) change nothing; the snapshot
  is reported again with `duplicate: true`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from schemas.records.scored import next_crossing
from schemas.vocabulary import rfc3339
from services.common.config.flatten import flatten
from services.scoring.domain.model import JOURNEY_STAGES, EngagementRule, ScoringModel
from services.scoring.domain.state import LeadState, ModelState

PROFILE_EVENT = "crm.lead_upserted"
MAX_INTERESTS = 50
REPORTED_INTERESTS = 10
LN2 = math.log(2.0)


class Crossing(NamedTuple):
    threshold: str
    direction: str  # "up" | "down"
    score: float


class ModelScore(NamedTuple):
    """One model's view of the lead after an event. (NamedTuples: immutable and cheap to build,
    which matters at 100k events/s.)"""

    model: str
    version: int
    fit: float
    engagement: float
    total: float
    previous_total: float | None
    crossed: tuple[Crossing, ...]
    above: tuple[str, ...]
    breakdown: tuple[tuple[str, float], ...]  # (rule id, points now), largest first
    interests: tuple[str, ...]
    journey_stage: str | None
    late: bool
    # what a reader needs to age the score without the model (`schemas.records.ModelScore`)
    half_life: float | None = None
    thresholds: tuple[tuple[str, float], ...] = ()
    fit_rules: frozenset[str] = frozenset()
    next_crossing: tuple[str, str, float] | None = None  # (threshold, direction, epoch)

    def to_dict(self) -> dict[str, Any]:
        nxt = self.next_crossing
        return {
            "model": self.model, "version": self.version, "fit": _r(self.fit),
            "engagement": _r(self.engagement), "total": _r(self.total),
            "previous_total": None if self.previous_total is None else _r(self.previous_total),
            "crossed": [{"threshold": c.threshold, "direction": c.direction, "score": c.score}
                        for c in self.crossed],
            "above": list(self.above),
            "breakdown": [{"rule": rule, "points": _r(pts),
                           "kind": "fit" if rule in self.fit_rules else "engagement"}
                          for rule, pts in self.breakdown],
            "interests": list(self.interests), "journey_stage": self.journey_stage,
            "late": self.late, "half_life": self.half_life,
            "thresholds": dict(self.thresholds),
            "next_crossing": None if nxt is None else {
                "threshold": nxt[0], "direction": nxt[1], "at": rfc3339(nxt[2])},
        }


class Snapshot(NamedTuple):
    lead_id: str
    as_of: float  # epoch seconds: the lead's newest event time
    duplicate: bool
    models: tuple[ModelScore, ...]


def _r(value: float) -> float:
    return round(value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def event_key(event: Mapping[str, Any]) -> int:
    """Stable 64-bit hash of an event's dedupe key, its `source` and `id` (what
    `schemas.vocabulary.dedupe_key` joins), as kept in the lead's recent-id window. The two are
    hashed joined by NUL, as since the first release: the windows stored in the changelog keep
    their meaning whichever version of the worker reads them (a rolling upgrade moves
    partitions back and forth between old and new workers)."""
    raw = f"{event.get('source')}\x00{event.get('id')}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def merge_profile(state: LeadState, data: Mapping[str, Any], t: float) -> bool:
    """Newest value per field wins (by event time). Nested objects flatten to dotted keys."""
    changed = False
    for key, value in flatten(data):
        if t >= state.profile_time.get(key, -math.inf):
            if state.profile.get(key) != value:
                changed = True
            state.profile[key] = value
            state.profile_time[key] = t
    return changed


def _recompute_fit(ms: ModelState, model: ScoringModel, profile: Mapping[str, Any]) -> None:
    ms.fit_points = {r.id: float(r.points) for r in model.fit if r.when(profile)}
    ms.fit = float(sum(ms.fit_points.values()))


def _engagement_at(ms: ModelState, k: float, now: float) -> float:
    return sum(v * math.exp(-k * (now - at)) for v, at in ms.engagement.values())


def _award(ms: ModelState, model: ScoringModel, rule: EngagementRule, t: float, now: float,
           k: float) -> None:
    points = rule.points
    window = windows = None
    if rule.cap is not None:
        window = int(t // rule.cap.window_seconds)
        windows = ms.caps.setdefault(rule.id, {})
        room = max(0.0, rule.cap.points - windows.get(window, 0.0))
        points = math.copysign(min(abs(points), room), points)
        if points == 0.0:
            return
    factor = math.exp(-k * (now - t))  # the award's worth at `now` (1 unless the event is late)
    worth = points * factor
    if model.engagement_max is not None or model.engagement_min is not None:
        current = _engagement_at(ms, k, now)
        if worth > 0 and model.engagement_max is not None:
            worth = max(0.0, min(worth, model.engagement_max - current))
        elif worth < 0 and model.engagement_min is not None:
            worth = min(0.0, max(worth, model.engagement_min - current))
        if worth == 0.0:
            return
    if windows is not None and window is not None:
        if window not in windows and windows:
            _prune_caps(ms, model, now)
        # the rule's window is charged with what was really awarded (after the model cap)
        windows[window] = windows.get(window, 0.0) + abs(worth / factor)
    slot = ms.engagement.get(rule.id)
    if slot is None:
        ms.engagement[rule.id] = [worth, now]
    else:
        slot[0] = slot[0] * math.exp(-k * (now - slot[1])) + worth
        slot[1] = now


def _prune_caps(ms: ModelState, model: ScoringModel, now: float) -> None:
    """Forget cap windows no event within the late tolerance can fall into any more."""
    horizon = now - model.late_tolerance_days * 86400.0
    for rule_id, windows in ms.caps.items():
        cap = model.caps.get(rule_id)
        if len(windows) > 1 and cap is not None:
            oldest = int(horizon // cap.window_seconds)
            for window in [w for w in windows if w < oldest]:
                del windows[window]


def _note_interests_and_journey(ms: ModelState, model: ScoringModel, etype: str,
                                data: Mapping[str, Any], t: float) -> None:
    if etype in model.interest_on:
        for field in model.interest_fields:
            value = data.get(field)
            topics = [value] if isinstance(value, str) else value if isinstance(value, list) else ()
            for topic in topics:
                if isinstance(topic, str) and topic:
                    ms.interests[topic] = ms.interests.get(topic, 0) + 1
        if len(ms.interests) > MAX_INTERESTS:
            keep = sorted(ms.interests.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_INTERESTS]
            ms.interests = dict(keep)
    journey = ms.journey  # stage -> newest time seen (max: a stage seen twice is seen once)
    stage = data.get("content_stage")
    if stage in JOURNEY_STAGES and journey.get(stage, -math.inf) < t:
        journey[stage] = t
    for rule in model.journey:
        if etype in rule.on and journey.get(rule.stage, -math.inf) < t and rule.when(data):
            journey[rule.stage] = t


def _journey_stage(ms: ModelState, model: ScoringModel, now: float) -> str | None:
    since = now - model.journey_window_days * 86400.0
    for stage in reversed(JOURNEY_STAGES):
        if ms.journey.get(stage, -math.inf) >= since:
            return stage
    return None


def _score(ms: ModelState, model: ScoringModel, now: float, late: bool,
           report: bool, detail: bool = True) -> ModelScore:
    k = LN2 / model.half_life_seconds
    exp = math.exp
    if detail:
        parts = [(rule, v * exp(-k * (now - at))) for rule, (v, at) in ms.engagement.items()]
        engagement = sum(p for _, p in parts)
    else:  # the hot path of a backtest: the sum alone, no per-rule list
        engagement = sum([v * exp(-k * (now - at)) for v, at in ms.engagement.values()])
    total = ms.fit + engagement
    previous = ms.total
    before = previous if previous is not None else 0.0
    crossed = tuple(
        Crossing(name, "up" if total >= at else "down", at)
        for name, at in model.ordered_thresholds
        if (before < at <= total) or (total < at <= before)
    ) if report and before != total else ()
    if report:
        ms.total = total
    if not detail:
        return ModelScore(model.id, model.version, ms.fit, engagement, total, previous, crossed,
                          (), (), (), None, late)
    parts += ms.fit_points.items()
    parts.sort(key=_magnitude)
    interests = sorted(ms.interests.items(), key=_popularity)[:REPORTED_INTERESTS] \
        if ms.interests else ()
    half_life = model.half_life_seconds
    thresholds = dict(model.ordered_thresholds)
    return ModelScore(
        model=model.id, version=model.version, fit=ms.fit, engagement=engagement, total=total,
        previous_total=previous, crossed=crossed,
        above=tuple(n for n, at in model.ordered_thresholds if total >= at),
        breakdown=tuple((r, p) for r, p in parts if abs(p) >= 0.005),
        interests=tuple(t for t, _ in interests),
        journey_stage=_journey_stage(ms, model, now) if ms.journey else None, late=late,
        half_life=half_life, thresholds=model.ordered_thresholds,
        fit_rules=frozenset(ms.fit_points),
        next_crossing=next_crossing(ms.fit, engagement, half_life, thresholds, now),
    )


def _magnitude(item: tuple[str, float]) -> float:
    return -abs(item[1])


def _popularity(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def describe(state: LeadState, model: ScoringModel) -> ModelScore:
    """The lead's full standing in `model` as of its newest event, without changing anything."""
    now = state.last_time if state.last_time is not None else 0.0
    return _score(_model_state(state, model), model, now, False, report=False)


def apply(state: LeadState, event: Mapping[str, Any], *, lead_id: str, event_time: float,
          models: Sequence[ScoringModel], recent_ids: int = 64, detail: bool = True) -> Snapshot:
    """Score one event for one lead (updating `state`) and return the lead's snapshot.
    `detail=False` leaves out breakdown, interests and journey stage (a backtest asks for them
    once per lead at the end, with `describe`)."""
    key = event_key(event)
    if key in state.seen:
        return describe_all(state, models, lead_id, duplicate=True, default_time=event_time)
    state.seen[key] = None
    if len(state.seen) > recent_ids:
        del state.seen[next(iter(state.seen))]
    etype = str(event.get("type", ""))
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    profile_changed = etype == PROFILE_EVENT and merge_profile(state, data, event_time)
    newest = state.last_time
    now = event_time if newest is None else max(newest, event_time)
    state.last_time = now
    scores = []
    for model in models:
        ms = _model_state(state, model)
        if profile_changed or ms.version != model.version:
            if ms.version != model.version:
                ms.engagement = {r: v for r, v in ms.engagement.items()
                                 if r in model.engagement_ids}
            ms.version = model.version
            _recompute_fit(ms, model, state.profile)
        late = newest is not None and event_time < newest - model.late_tolerance_days * 86400.0
        if not late:
            k = LN2 / model.half_life_seconds
            for rule in model.rules_by_type.get(etype, ()):
                if rule.when(data):
                    _award(ms, model, rule, event_time, now, k)
            if model.journey or etype in model.interest_on or "content_stage" in data:
                _note_interests_and_journey(ms, model, etype, data, event_time)
        scores.append(_score(ms, model, now, late, report=True, detail=detail))
    return Snapshot(lead_id, now, False, tuple(scores))


def _model_state(state: LeadState, model: ScoringModel) -> ModelState:
    ms = state.models.get(model.id)
    if ms is None:
        ms = state.models[model.id] = ModelState()
    return ms


def absorb(state: LeadState, other: LeadState, *, lead_id: str, other_id: str,
           models: Sequence[ScoringModel], recent_ids: int = 64) -> Snapshot:
    """Fold `other` (the state of `other_id`, linked to this lead: docs/identity.md) into
    `state`, once: a second call for the same `other_id` changes nothing and reports a
    duplicate. Everything `other` did counts as if it had happened to this lead: awards keep
    their event times (so they decay as they would have), cap windows add up, interests add
    up, journey stages and profile fields keep the newest. Thresholds are crossed against the
    total last reported for this lead, so the merge itself can cross them."""
    if other_id in state.merged or other_id == lead_id:
        return describe_all(state, models, lead_id, duplicate=True)
    state.merged[other_id] = None
    state.merged.update(other.merged)
    # both windows, whole: a retried event of either id must stay a duplicate
    state.seen = dict.fromkeys([*state.seen, *other.seen][-2 * recent_ids:])
    for key, value in other.profile.items():
        t = other.profile_time.get(key, -math.inf)
        if t >= state.profile_time.get(key, -math.inf):
            state.profile[key], state.profile_time[key] = value, t
    newest = [t for t in (state.last_time, other.last_time) if t is not None]
    now = state.last_time = max(newest) if newest else None
    scores = []
    for model in models:
        ms = _model_state(state, model)
        theirs = other.models.get(model.id)
        for side in (ms, theirs):  # rules the model no longer has award nothing
            if side is not None and side.version != model.version:
                side.engagement = {r: v for r, v in side.engagement.items()
                                   if r in model.engagement_ids}
        if theirs is not None:
            _absorb_model(ms, theirs, LN2 / model.half_life_seconds)
        ms.version = model.version
        _recompute_fit(ms, model, state.profile)
        scores.append(_score(ms, model, now or 0.0, False, report=True))
    return Snapshot(lead_id, now or 0.0, False, tuple(scores))


def _absorb_model(ms: ModelState, other: ModelState, k: float) -> None:
    for rule, (value, at) in other.engagement.items():
        slot = ms.engagement.get(rule)
        if slot is None:
            ms.engagement[rule] = [value, at]
        else:  # both as of the later of the two times
            t = max(at, slot[1])
            slot[0] = slot[0] * math.exp(-k * (t - slot[1])) + value * math.exp(-k * (t - at))
            slot[1] = t
    for rule, windows in other.caps.items():
        mine = ms.caps.setdefault(rule, {})
        for window, points in windows.items():
            mine[window] = mine.get(window, 0.0) + points
    for topic, count in other.interests.items():
        ms.interests[topic] = ms.interests.get(topic, 0) + count
    if len(ms.interests) > MAX_INTERESTS:
        ms.interests = dict(sorted(ms.interests.items(), key=_popularity)[:MAX_INTERESTS])
    for stage, t in other.journey.items():
        ms.journey[stage] = max(t, ms.journey.get(stage, -math.inf))


def describe_all(state: LeadState, models: Sequence[ScoringModel], lead_id: str, *,
                 duplicate: bool = False, default_time: float = 0.0) -> Snapshot:
    """The lead's snapshot in every model as of its newest event (`default_time` for a lead
    with none), changing nothing."""
    now = state.last_time if state.last_time is not None else default_time
    return Snapshot(lead_id, now, duplicate, tuple(
        _score(_model_state(state, m), m, now, False, report=False) for m in models))
