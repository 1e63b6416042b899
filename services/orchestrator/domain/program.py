"""Nurture programs as the decision code sees them: frozen, validated, conditions compiled.

Built from YAML files by `services.orchestrator.adapters.program_files`; see
`schemas/config/program.schema.json` for the file format."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Predicate = Callable[[Mapping[str, Any]], bool]
TriggerKind = Literal["event", "stage", "threshold", "inactivity", "date", "manual"]
StepKind = Literal["wait", "wait_for", "branch", "send", "task", "set_stage", "tag", "enroll",
                   "exit"]
Reentry = Literal["never", "always", "after"]


def always(_: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class EventMatch:
    """An event of one of `types` whose data satisfies `when`."""

    types: frozenset[str]
    when: Predicate = always

    def matches(self, etype: str, data: Mapping[str, Any]) -> bool:
        return etype in self.types and self.when(data)


@dataclass(frozen=True, slots=True)
class Trigger:
    """What enrolls a lead: an event, entering a stage, crossing a score threshold (`direction`
    up, or down: by an event or by decay alone), inactivity, a date in the profile (with an
    offset), or only the API (manual)."""

    kind: TriggerKind
    event: EventMatch | None = None
    stage: str | None = None
    model: str | None = None
    threshold: str | None = None
    direction: Literal["up", "down"] = "up"
    inactive_seconds: int = 0
    date_field: str | None = None
    offset_seconds: int = 0  # negative: before the date


@dataclass(frozen=True, slots=True)
class Branch:
    when: Predicate  # on the lead's facts (see domain/facts.py)
    goto: str


@dataclass(frozen=True, slots=True)
class Step:
    """One step. Which fields matter depends on `kind`:
    wait: seconds · wait_for: event, seconds (timeout), on_event, on_timeout ·
    branch: branches, otherwise · send: channel, template, expires_seconds ·
    task: subject, due_seconds · set_stage: stage · tag: tag · enroll: program · exit: reason.
    `goto` fields name a step id; None means the next step. `next` (any step that continues)
    jumps somewhere other than the following step, so branches can converge."""

    id: str
    kind: StepKind
    next: str | None = None
    seconds: int = 0
    event: EventMatch | None = None
    on_event: str | None = None
    on_timeout: str | None = None
    branches: tuple[Branch, ...] = ()
    otherwise: str | None = None
    channel: str | None = None
    template: str | None = None
    expires_seconds: int | None = None
    subject: str | None = None
    due_seconds: int = 86400
    stage: str | None = None
    tag: str | None = None
    program: str | None = None
    reason: str | None = None


# Three days by default: a follow-up is for what a lead did lately. (Where the orchestrator's
# clock is moved, ingest and dispatch follow it, `NURTURE_CLOCK_URL`, so fresh events are fresh.)
DEFAULT_MAX_EVENT_AGE_SECONDS: int | None = 3 * 86400
TOO_OLD = "event older than max_event_age"  # the reason of a skipped enrollment


@dataclass(frozen=True, slots=True)
class Program:
    id: str
    version: int
    name: str
    trigger: Trigger
    steps: tuple[Step, ...]
    priority: int = 50  # higher wins the contact budget
    entry: Predicate = always  # on the lead's facts
    stages: frozenset[str] | None = None  # enroll only from these stages (None: any)
    exclude_stages: frozenset[str] = frozenset()  # never in these; entering one exits
    reentry: Reentry = "never"
    reentry_after_seconds: int = 0
    # an event (or the threshold or stage it caused) older than this when decided starts no
    # enrollment: follow-ups are for what a lead does now, not for a backfill. None: any age
    max_event_age_seconds: int | None = DEFAULT_MAX_EVENT_AGE_SECONDS
    goal: EventMatch | None = None  # reaching it exits with reason "goal"
    exit_on_unsubscribe: bool = True
    description: str = ""
    step_index: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_index", {s.id: i for i, s in enumerate(self.steps)})

    def index_of(self, step_id: str | None, current: int) -> int:
        """Where a `goto` leads: the named step, or the one after `current`."""
        return current + 1 if step_id is None else self.step_index[step_id]
