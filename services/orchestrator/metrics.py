"""The orchestrator's Prometheus metrics and decision log: what an operator watches (backlogs,
lateness, lag) and what a marketer asks (leads per stage, conversions, time in stage, sales
cycle, enrollments and exits, messages and engagement by program and step).

Labels are bounded: program and step ids come from the program files (anything else an event
claims is counted as `other`), stages and event kinds are fixed sets. No lead id in any label;
log lines carry `lead_hash`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.vocabulary import CHANNELS
from services.common.db.retention import pruned_rows
from services.common.observability.logging import lead_hash
from services.common.observability.metrics import (
    LATENCY_BUCKETS_SECONDS,
    ConsumerLag,
    OutboxBacklog,
)
from services.orchestrator.adapters.gauges import Counts
from services.orchestrator.adapters.retention import RULES
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import STAGES
from services.orchestrator.domain.program import Program

log = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400
TIME_IN_STAGE_BUCKETS = (HOUR, 6 * HOUR, DAY, 3 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 60 * DAY,
                         90 * DAY, 180 * DAY)
CONVERSION_STAGES = frozenset({"mql", "sql", "opportunity", "customer"})
# email.*, sms.* and message.* events, as `event` label values (bounded)
ENGAGEMENT = frozenset({"sent", "failed", "retried", "suppressed", "delivered", "opened",
                        "clicked", "bounced", "complained", "unsubscribed", "replied",
                        "opted_out"})
NOTE_LOG = {"sent": "message scheduled", "deferred": "message held",
            "dropped": "message dropped"}


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry,
                 programs: Mapping[str, Program] | None = None) -> None:
        self.steps = {p.id: {s.id for s in p.steps} for p in (programs or {}).values()}
        self._funnel(registry)
        self._programs(registry)
        self._work(registry)
        self.pruned = pruned_rows(registry, "orchestrator", RULES)
        self._zeros(programs or {})

    def _funnel(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "nurture_orchestrator_events_total",
            "Scored events consumed, by outcome (processed, duplicate, dead_lettered).",
            ["outcome"], registry=registry)
        self.transitions = Counter(
            "nurture_orchestrator_stage_transitions_total",
            "Lifecycle stage changes, by from and to stage.", ["from_stage", "to_stage"],
            registry=registry)
        self.conversions = Counter(
            "nurture_orchestrator_conversions_total",
            "Leads reaching mql, sql, opportunity or customer for the first time (a skipped "
            "stage counts as reached; a recycled lead coming back does not count again), by "
            "whether they had been in a nurture program (nurtured=true|false).",
            ["to_stage", "nurtured"],
            registry=registry)
        self.time_in_stage = Histogram(
            "nurture_orchestrator_time_in_stage_seconds",
            "Time a lead spent in a stage, observed when it left it, by that stage.",
            ["stage"], buckets=TIME_IN_STAGE_BUCKETS, registry=registry)
        self.sales_cycle = Histogram(
            "nurture_orchestrator_sales_cycle_seconds",
            "Time from a lead's creation to becoming a customer, by nurtured.",
            ["nurtured"], buckets=TIME_IN_STAGE_BUCKETS, registry=registry)

    def _programs(self, registry: CollectorRegistry) -> None:
        self.enrollments = Counter(
            "nurture_orchestrator_enrollments_total",
            "Enrollment changes by program and status (entered, exited, completed; skipped: "
            "not entered, the event was older than the program's max_event_age) and reason.",
            ["program", "status", "reason"], registry=registry)
        self.messages = Counter(
            "nurture_orchestrator_messages_total",
            "Messages decided, by program, step, channel, outcome (sent = handed to "
            "dispatch, deferred = held, dropped) and reason (quiet hours, frequency cap, "
            "suppressed, expired, no consent ...; none when sent).",
            ["program", "step", "channel", "outcome", "reason"], registry=registry)
        self.message_events = Counter(
            "nurture_orchestrator_message_events_total",
            "Delivery and engagement events (sent, delivered, opened, clicked, bounced, "
            "unsubscribed, ...) by program, step and channel.",
            ["program", "step", "channel", "event"], registry=registry)

    def _work(self, registry: CollectorRegistry) -> None:
        self.batch_duration = Histogram(
            "nurture_orchestrator_batch_duration_seconds",
            "Time to decide and commit one polled batch of scored events.",
            buckets=LATENCY_BUCKETS_SECONDS, registry=registry)
        self.published = Counter(
            "nurture_orchestrator_outbox_published_total",
            "Outbox records published to Kafka.", registry=registry)
        self.timer_lateness = Histogram(
            "nurture_orchestrator_timer_lateness_seconds",
            "How late timers fired after their due time.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=registry)
        self.leads = Gauge(
            "nurture_orchestrator_leads",
            "Leads per lifecycle stage now, by whether they have been in a program.",
            ["stage", "nurtured"], registry=registry)
        self.active = Gauge(
            "nurture_orchestrator_active_enrollments",
            "Leads enrolled in each program now.", ["program"], registry=registry)
        self.timers_pending = Gauge(
            "nurture_orchestrator_timers_pending", "Timers set and not fired yet.",
            registry=registry)
        self.timers_overdue = Gauge(
            "nurture_orchestrator_timers_overdue", "Timers past their due time, not fired yet.",
            registry=registry)
        self.oldest_overdue = Gauge(
            "nurture_orchestrator_timer_oldest_overdue_seconds",
            "How far past due the oldest unfired timer is (0 when none is).",
            registry=registry)
        self.outbox = OutboxBacklog(registry)
        self.lag = ConsumerLag(registry)

    def _zeros(self, programs: Mapping[str, Program]) -> None:
        """Every known label value at 0 from the start: a counter series born at 1 has no
        increase() for its first event, so alerts and ratios would miss it."""
        for outcome in ("processed", "duplicate", "dead_lettered"):
            self.events.labels(outcome)
        for stage in CONVERSION_STAGES:
            for flag in ("true", "false"):
                self.conversions.labels(stage, flag)
        for stage in STAGES:  # new leads: the funnel's denominator
            self.transitions.labels("none", stage)
        for program in programs.values():
            self.enrollments.labels(program.id, "entered", "trigger")
            for step in program.steps:
                if step.kind != "send" or not step.channel:
                    continue
                self.messages.labels(program.id, step.id, step.channel, "sent", "none")
                for kind in ENGAGEMENT:
                    self.message_events.labels(program.id, step.id, _channel(step.channel),
                                               kind)

    def count_events(self, *, processed: int, duplicate: int, dead_lettered: int) -> None:
        """A committed batch's scored events by outcome: decided (processed), already seen
        (duplicate), or sent to the dead-letter topic (unparseable, or the decision raised)."""
        self.events.labels("processed").inc(processed)
        self.events.labels("duplicate").inc(duplicate)
        self.events.labels("dead_lettered").inc(dead_lettered)

    def observe(self, effects: Sequence[tuple[str, Effects]]) -> None:
        """Count and log what committed decisions did (call after the transaction)."""
        for lead_id, fx in effects:
            for change in fx.stage_changes:
                self._stage_change(change.from_stage, change.to_stage, change.at,
                                   change.entered_at, change.created_at, change.nurtured,
                                   change.reached)
            for enr in fx.enrollments:
                reason = enr.reason if enr.status != "entered" else "trigger"
                self.enrollments.labels(enr.program_id, enr.status, _bounded(reason)).inc()
            for note in fx.notes:
                self.messages.labels(note.program_id, note.step_id, note.channel,
                                     note.status, held_reason(note.reason)).inc()
            log_decisions(lead_id, fx)

    def _stage_change(self, from_stage: str | None, to_stage: str, at: float,
                      entered_at: float | None, created_at: float | None,
                      nurtured: bool, reached: Sequence[str] = ()) -> None:
        self.transitions.labels(from_stage or "none", to_stage).inc()
        flag = "true" if nurtured else "false"
        if from_stage is not None and entered_at:
            self.time_in_stage.labels(from_stage).observe(max(0.0, at - entered_at))
        for stage in reached:  # leads, not entries: each funnel stage once per lead
            if stage in CONVERSION_STAGES:
                self.conversions.labels(stage, flag).inc()
        if to_stage == "customer" and created_at:
            self.sales_cycle.labels(flag).observe(max(0.0, at - created_at))

    def observe_events(self, events: Iterable[Mapping[str, Any]],
                       sends: Mapping[str, tuple[str, str]] | None = None) -> None:
        """Delivery and engagement events (email.*, sms.*, message.*) by program and step; an
        event that names only its message id is attributed through `sends` (message id →
        program, step: `Leads.sends`, service_layer/unit_of_work.py), else counted as `other`."""
        for event in events:
            family, _, kind = str(event.get("type", "")).partition(".")
            data = event.get("data")
            if family not in ("email", "sms", "message") or not isinstance(data, Mapping):
                continue
            if family == "message" and kind == "failed" and data.get("retryable"):
                kind = "retried"
            if kind not in ENGAGEMENT:
                continue
            channel = data.get("channel") if family == "message" else family
            program, step = data.get("program_id"), data.get("step_id")
            if not isinstance(program, str) and data.get("message_id") in (sends or {}):
                program, step = (sends or {})[data["message_id"]]
            program, step = self._program_step(program, step)
            self.message_events.labels(program, step, _channel(channel), kind).inc()

    def _program_step(self, program: Any, step: Any) -> tuple[str, str]:
        if not isinstance(program, str) or program not in self.steps:
            return "other", "other"
        return program, step if isinstance(step, str) and step in self.steps[program] \
            else "other"

    def refresh(self, counts: Counts, outbox: tuple[int, int]) -> None:
        """Set the gauges from a periodic count (every stage and program, zeros included)."""
        for stage in STAGES:
            for nurtured in (True, False):
                self.leads.labels(stage, "true" if nurtured else "false").set(
                    counts.leads.get((stage, nurtured), 0))
        active = dict.fromkeys(self.steps, 0)
        for program, n in counts.active.items():  # programs no file defines any more: other
            key = program if program in self.steps else "other"
            active[key] = active.get(key, 0) + n
        for program, n in active.items():
            self.active.labels(program).set(n)
        self.timers_pending.set(counts.timers_pending)
        self.timers_overdue.set(counts.timers_overdue)
        self.oldest_overdue.set(counts.oldest_overdue_seconds)
        self.outbox.set(outbox)


def log_decisions(lead_id: str, fx: Effects) -> None:
    """One line per decision worth knowing: stage changes, enrollments, messages scheduled,
    held (and why) or dropped."""
    base = {"event_id": fx.event_id, "lead_hash": lead_hash(lead_id)}
    for change in fx.stage_changes:
        log.info("stage changed", extra={**base, "from_stage": change.from_stage,
                                         "to_stage": change.to_stage, "cause": change.cause})
    for enr in fx.enrollments:
        log.info(f"enrollment {enr.status}", extra={**base, "program": enr.program_id,
                                                    "reason": enr.reason})
    for note in fx.notes:
        log.info(NOTE_LOG.get(note.status, f"message {note.status}"), extra={
            **base, "program": note.program_id, "step": note.step_id, "channel": note.channel,
            "reason": note.reason, "message_id": note.message_id, "until": note.until})


def held_reason(reason: str | None) -> str:
    """A policy reason as a label: its kind only (`suppressed: unsubscribed` → `suppressed`)."""
    return (reason or "none").split(":", 1)[0].strip()[:40] or "none"


def _channel(value: Any) -> str:
    return value if value in CHANNELS else "other"


def _bounded(reason: str | None) -> str:
    """Exit reasons come from program files and a fixed set in code; stage names are bounded."""
    return (reason or "none")[:60]
