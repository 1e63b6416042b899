"""Program dry-run: recorded (scored) events through the same Decider, with simulated time and
no database, Kafka or inbox. Timers fire in due order between events; after the last event the
simulation runs on for `tail_seconds` so waiting steps finish. Pure: events in, report out.

A score timer that fires (decay alone takes a score across a threshold) asks `rescore` for the
scored event scoring would answer to `lead.score_due`; the entrypoint asks the real scorer.
Without `rescore` (events already scored) no decay crossing happens."""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.records import ModelScore
from schemas.vocabulary import dedupe_key, rfc3339
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects, ScoreDue, Timer
from services.orchestrator.domain.lead import Lead

Rescored = tuple[Mapping[str, Any], Mapping[str, ModelScore], float]
"""A scored event: the event, the lead's scores after it, its time."""


@dataclass
class Simulation:
    decider: Decider
    # lead id, score due -> the scored `lead.score_due` event (None: scoring would drop it)
    rescore: Callable[[str, ScoreDue], Rescored | None] | None = None
    leads: dict[str, Lead] = field(default_factory=dict)
    timers: list[tuple[float, int, str, Timer]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    clock: float = 0.0
    events: int = 0
    duplicates: int = 0
    enrolled: Counter[str] = field(default_factory=Counter)
    exits: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sent: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    held: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    stages: Counter[str] = field(default_factory=Counter)
    entered_because: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # score thresholds crossed upward, per "model/threshold": crossings and the leads
    ups: Counter[str] = field(default_factory=Counter)
    leads_up: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    models: set[str] = field(default_factory=set)  # scoring models seen in the scores
    _order: Iterator[int] = field(default_factory=itertools.count)

    def _record(self, lead_id: str, fx: Effects) -> None:
        for timer in fx.timers:
            heapq.heappush(self.timers, (timer.due_at, next(self._order), lead_id, timer))
        for enr in fx.enrollments:
            if enr.status == "skipped":
                self.skipped[enr.program_id][enr.reason or "skipped"] += 1
            elif enr.status == "entered":
                self.enrolled[enr.program_id] += 1
                self.entered_because[enr.program_id][enr.reason or "entered"] += 1
                self.entries.setdefault(lead_id, []).append(
                    {"program": enr.program_id, "why": enr.reason, "at": rfc3339(enr.at)})
            else:
                self.exits[enr.program_id][enr.reason or enr.status] += 1
        for note in fx.notes:
            target = self.sent if note.status == "sent" else self.held
            key = note.step_id if note.status == "sent" else f"{note.status}: {note.reason}"
            target[note.program_id][key] += 1
        for change in fx.stage_changes:
            self.stages[f"{change.from_stage or 'new'} -> {change.to_stage}"] += 1
        if self.rescore is None:
            return
        for due in fx.scores_due:
            scored = self.rescore(lead_id, due)
            if scored is not None:
                self._decide(lead_id, *scored)

    def run_until(self, until: float) -> None:
        """Fire every timer due by `until`, in due order (each as of its due time)."""
        while self.timers and self.timers[0][0] <= until:
            due, _, lead_id, timer = heapq.heappop(self.timers)
            self.clock = max(self.clock, due)
            self._record(lead_id, self.decider.on_timer(self.leads[lead_id], timer, due))

    def feed(self, event: Mapping[str, Any], scores: Mapping[str, ModelScore],
             event_time: float) -> None:
        """One recorded event with the lead's scores after it (`LeadScore.models`; empty for a
        plain CloudEvent)."""
        key = dedupe_key(str(event.get("source")), str(event.get("id")))
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        self.run_until(event_time)
        self.clock = max(self.clock, event_time)
        self.events += 1
        self._decide(str(event["subject"]), event, scores, event_time)

    def _decide(self, lead_id: str, event: Mapping[str, Any], scores: Mapping[str, ModelScore],
                event_time: float) -> None:
        lead, fx = self.decider.on_event_for(self.leads.get(lead_id), lead_id, event, scores,
                                             event_time=event_time, now=self.clock)
        self.leads[lead_id] = lead
        self._record(lead_id, fx)
        for score in scores.values():
            self.models.add(score.model)
            for crossing in score.crossed:
                if crossing.direction == "up":
                    self.ups[f"{score.model}/{crossing.threshold}"] += 1
                    self.leads_up[f"{score.model}/{crossing.threshold}"].add(lead_id)

    def report(self) -> dict[str, Any]:
        programs = {}
        for pid in self.decider.programs:
            programs[pid] = {
                "enrolled": self.enrolled[pid],
                "active": sum(1 for lead in self.leads.values()
                              if pid in lead.enrollments and lead.enrollments[pid].active),
                "sent_by_step": dict(self.sent[pid]),
                "held": dict(self.held[pid]),
                "exits": dict(self.exits[pid]),
                "entered_because": dict(self.entered_because[pid]),
                "skipped": dict(self.skipped[pid]),
            }
        return {"events": self.events, "duplicates": self.duplicates, "leads": len(self.leads),
                "stage_changes": dict(self.stages),
                "leads_by_stage": dict(Counter(lead.stage for lead in self.leads.values())),
                "models_seen": sorted(self.models),
                "crossed_up": {k: {"crossings": n, "leads": len(self.leads_up[k])}
                               for k, n in sorted(self.ups.items())},
                "programs": programs, "entries": self.entries}
