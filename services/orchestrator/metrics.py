"""The orchestrator's Prometheus metrics: what an operator watches (backlogs, lateness) and what a
marketer asks (stage transitions, enrollments and exits, messages by program/step/outcome).
Labels are bounded: program and step ids come from the program files, never from events."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.orchestrator.domain.effects import Effects

TIME_IN_STAGE_BUCKETS = (3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
                         60 * 86400, 90 * 86400, 180 * 86400)


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "nurture_orchestrator_events_total",
            "Scored events consumed, by outcome (processed, duplicate, dead_lettered).",
            ["outcome"], registry=registry)
        self.transitions = Counter(
            "nurture_orchestrator_stage_transitions_total",
            "Lifecycle stage changes, by from and to stage.", ["from_stage", "to_stage"],
            registry=registry)
        self.enrollments = Counter(
            "nurture_orchestrator_enrollments_total",
            "Enrollment changes by program and status (entered, exited, completed) and reason.",
            ["program", "status", "reason"], registry=registry)
        self.messages = Counter(
            "nurture_orchestrator_messages_total",
            "Messages decided, by program, step, channel and outcome (sent, deferred, dropped).",
            ["program", "step", "channel", "outcome"], registry=registry)
        self.published = Counter(
            "nurture_orchestrator_outbox_published_total",
            "Outbox records published to Kafka.", registry=registry)
        self.timer_lateness = Histogram(
            "nurture_orchestrator_timer_lateness_seconds",
            "How late timers fired after their due time.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=registry)

    def observe(self, effects: Sequence[tuple[str, Effects]]) -> None:
        for _, fx in effects:
            for change in fx.stage_changes:
                self.transitions.labels(change.from_stage or "none", change.to_stage).inc()
            for enr in fx.enrollments:
                reason = enr.reason if enr.status != "entered" else "trigger"
                self.enrollments.labels(enr.program_id, enr.status, _bounded(reason)).inc()
            for note in fx.notes:
                self.messages.labels(note.program_id, note.step_id, note.channel,
                                     note.status).inc()


def _bounded(reason: str | None) -> str:
    """Exit reasons come from program files and a fixed set in code; stage names are bounded."""
    return (reason or "none")[:60]
