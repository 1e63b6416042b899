"""Backtest: replay recorded events through the same engine the worker runs, with no Kafka, and
summarize what the models would have done: score distribution, threshold crossings (how many leads,
when, how long after first seen) and the rules that make up the scores. Pure: events in, report out.

Crossings by decay alone are played as the services play them: each scored lead's next crossing
(`schemas.records.scored.next_crossing`) is due as a `lead.score_due` event at its time, before
any later event (and a later event of the lead moves or cancels it). So a lead that cooled below a
threshold and came back counts a crossing down and a second one up, as in the services; decay
crossings after the last event are not played.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.cloudevent import score_due_event
from schemas.records.scored import next_crossing
from services.scoring.domain.engine import Snapshot, apply, describe
from services.scoring.domain.model import ScoringModel
from services.scoring.domain.state import LeadState

DAY = 86400.0


@dataclass
class ThresholdStats:
    leads_up: set[str] = field(default_factory=set)
    up: int = 0
    down: int = 0
    days_to_first: list[float] = field(default_factory=list)
    by_week: Counter[str] = field(default_factory=Counter)


@dataclass
class Replay:
    """Accumulates a replay; `report()` summarizes it."""

    models: Sequence[ScoringModel]
    recent_ids: int = 64
    leads: dict[str, LeadState] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    thresholds: dict[tuple[str, str], ThresholdStats] = field(
        default_factory=lambda: defaultdict(ThresholdStats))
    events: int = 0
    duplicates: int = 0
    late: int = 0
    first: float = math.inf
    last: float = -math.inf
    # (lead, model) -> its next crossing by decay; the heap of them, stale ones left in it
    due: dict[tuple[str, str], float] = field(default_factory=dict)
    schedule: list[tuple[float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_id = {m.id: m for m in self.models}

    def feed(self, event: Mapping[str, Any], event_time: float) -> None:
        self._decay_until(event_time)
        lead_id = str(event["subject"])
        state = self.leads.get(lead_id)
        if state is None:
            state = self.leads[lead_id] = LeadState()
            self.first_seen[lead_id] = event_time
        snap = apply(state, event, lead_id=lead_id, event_time=event_time, models=self.models,
                     recent_ids=self.recent_ids, detail=False)
        self.events += 1
        self.first = min(self.first, event_time)
        self.last = max(self.last, event_time)
        if snap.duplicate:
            self.duplicates += 1
            return
        self.late += any(m.late for m in snap.models)
        self._count(lead_id, snap)

    def _decay_until(self, until: float) -> None:
        """Play every crossing by decay due by `until`, in time order."""
        while self.schedule and self.schedule[0][0] <= until:
            at, lead_id, model = heapq.heappop(self.schedule)
            if self.due.get((lead_id, model)) != at:
                continue  # moved or cancelled by a later event
            del self.due[(lead_id, model)]
            snap = apply(self.leads[lead_id], score_due_event(lead_id, model, at),
                         lead_id=lead_id, event_time=at, models=self.models,
                         recent_ids=self.recent_ids, detail=False)
            self._count(lead_id, snap)

    def _plan(self, lead_id: str, snap: Snapshot) -> None:
        for score in snap.models:
            model = self.by_id[score.model]
            found = next_crossing(score.fit, score.engagement, model.half_life_seconds,
                                  model.thresholds, snap.as_of)
            key = (lead_id, score.model)
            if found is None:
                self.due.pop(key, None)
            elif self.due.get(key) != found[2]:
                self.due[key] = found[2]
                heapq.heappush(self.schedule, (found[2], lead_id, score.model))

    def _count(self, lead_id: str, snap: Snapshot) -> None:
        """The crossings of a scored event; and the lead's next crossing by decay planned."""
        self._plan(lead_id, snap)
        for score in snap.models:
            for crossing in score.crossed:
                stats = self.thresholds[(score.model, crossing.threshold)]
                if crossing.direction == "down":
                    stats.down += 1
                    continue
                stats.up += 1
                stats.by_week[_week(snap.as_of)] += 1
                if lead_id not in stats.leads_up:
                    stats.leads_up.add(lead_id)
                    stats.days_to_first.append((snap.as_of - self.first_seen[lead_id]) / DAY)

    def report(self) -> dict[str, Any]:
        return {
            "events": self.events, "leads": len(self.leads), "duplicates": self.duplicates,
            "late": self.late,
            "from": _iso(self.first) if self.events else None,
            "to": _iso(self.last) if self.events else None,
            "models": [self._model_report(m) for m in self.models],
        }

    def _model_report(self, model: ScoringModel) -> dict[str, Any]:
        latest = [describe(state, model) for state in self.leads.values() if state.models]
        totals = sorted(score.total for score in latest)
        contributions: dict[str, float] = defaultdict(float)
        holders: Counter[str] = Counter()
        for score in latest:
            for rule, points in score.breakdown:
                contributions[rule] += points
                holders[rule] += 1
        top = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))[:15]
        return {
            "model": model.id, "version": model.version,
            "distribution": _distribution(totals),
            "bands": _bands(totals, model.thresholds),
            "thresholds": [self._threshold_report(model.id, name, at)
                           for name, at in sorted(model.thresholds.items(), key=lambda kv: kv[1])],
            "top_rules": [{"rule": r, "points": round(p, 2), "leads": holders[r]} for r, p in top],
        }

    def _threshold_report(self, model: str, name: str, at: float) -> dict[str, Any]:
        stats = self.thresholds.get((model, name), ThresholdStats())
        days = sorted(stats.days_to_first)
        return {
            "threshold": name, "score": at, "leads_crossed_up": len(stats.leads_up),
            "crossings_up": stats.up, "crossings_down": stats.down,
            "median_days_to_first_crossing": round(statistics.median(days), 1) if days else None,
            "by_week": dict(sorted(stats.by_week.items())),
        }


def replay(events: Iterable[tuple[Mapping[str, Any], float]], models: Sequence[ScoringModel],
           *, recent_ids: int = 64) -> dict[str, Any]:
    """Replay (event, event time) pairs in the given order and return the report."""
    run = Replay(models, recent_ids)
    for event, t in events:
        run.feed(event, t)
    return run.report()


def _distribution(totals: Sequence[float]) -> dict[str, float | None]:
    if not totals:
        return {"min": None, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}

    def pct(p: float) -> float:
        return round(totals[min(len(totals) - 1, int(p * len(totals)))], 2)

    return {"min": round(totals[0], 2), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "max": round(totals[-1], 2), "mean": round(statistics.fmean(totals), 2)}


def _bands(totals: Sequence[float], thresholds: Mapping[str, float]) -> dict[str, int]:
    edges = sorted(thresholds.items(), key=lambda kv: kv[1])
    bands: dict[str, int] = {f"below {edges[0][0]}": 0} if edges else {}
    bands.update({name: 0 for name, _ in edges})
    for total in totals:
        label = next((name for name, at in reversed(edges) if total >= at), None)
        bands[label or f"below {edges[0][0]}"] += 1
    return bands


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _week(epoch: float) -> str:
    year, week, _ = datetime.fromtimestamp(epoch, UTC).isocalendar()
    return f"{year}-W{week:02d}"
