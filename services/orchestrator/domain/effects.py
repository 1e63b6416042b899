"""What a decision asks the adapters to do: commands to publish (via the outbox), stage changes
to record and publish, timers to set, scores to have re-read when decay crosses a threshold, and
a log of what was held back and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Command:
    """A dispatch command (`nurture.dispatch.v1`). `message_id` is deterministic: the same
    decision replayed yields the same id, and dispatch delivers each id once."""

    message_id: str
    lead_id: str
    channel: str  # email | sms | crm_task | webhook
    program_id: str
    program_version: int
    step_id: str
    template: str | None
    context: dict[str, Any]
    created_at: float
    expires_at: float | None = None
    subject: str | None = None
    due_at: float | None = None
    event_time: float | None = None  # of the event that caused it (end-to-end latency)
    event_id: str | None = None  # of the event that caused it (dispatch's log lines)


@dataclass(frozen=True, slots=True)
class StageChange:
    lead_id: str
    from_stage: str | None
    to_stage: str
    at: float
    cause: str
    # for the funnel metrics: when the lead entered `from_stage`, when it was created, and
    # whether it had been in any program (nurtured) by the time of the change
    entered_at: float | None = None
    created_at: float | None = None
    nurtured: bool = False
    reached: tuple[str, ...] = ()  # funnel stages reached for the first time (Lead.reach)


@dataclass(frozen=True, slots=True)
class Timer:
    """Wake the lead at `due_at`: a program step (`generation` must still match), an inactivity
    check, a date-relative trigger, or a score due to cross a threshold by decay (`score`: then
    `program_id` is the scoring model's id, and a lead has one such timer per model: a new one
    replaces it)."""

    due_at: float
    kind: str  # step | inactivity | date | score
    program_id: str
    generation: int = 0


@dataclass(frozen=True, slots=True)
class ScoreDue:
    """The lead's score in `model` is due to cross a threshold by decay at `at`: published as a
    `lead.score_due` event for scoring, whose scored event brings the crossing."""

    model: str
    at: float


@dataclass(frozen=True, slots=True)
class Note:
    """A line of the lead's message log: scheduled, deferred (held) or dropped, with why."""

    program_id: str
    step_id: str
    channel: str
    status: str  # sent | deferred | dropped
    reason: str | None
    at: float
    until: float | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentChange:
    program_id: str
    status: str  # entered | exited | completed | skipped (not entered: the event was too old)
    reason: str | None
    at: float


@dataclass
class Effects:
    commands: list[Command] = field(default_factory=list)
    stage_changes: list[StageChange] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    enrollments: list[EnrollmentChange] = field(default_factory=list)
    scores_due: list[ScoreDue] = field(default_factory=list)
    event_id: str | None = None  # the event decided on (None: a timer or an API call)
