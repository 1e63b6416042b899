"""The orchestrator's decisions (pure): given a lead, what happened and `now`, return the lead
as it is afterwards and the effects. No I/O, no clock reads: the service layer loads the lead,
calls one of `Decider.decide_event` / `decide_timer` / `decide_enroll` / `decide_unenroll`
(which leave the lead they are given as it was), then saves the new lead and the effects in one
unit of work. The `on_*` methods underneath work in place on a lead the caller owns.

Program edits: an enrollment keeps the version it entered with in `program_version`; when a
program file changes, running enrollments continue by step *id* in the new version (a step that
no longer exists ends the enrollment with reason "program changed").

`scores` is the lead's score per model right after the event (`LeadScore.models` of the scored
event); empty when the event came without scores (a plain CloudEvent in a dry run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from schemas.records import ModelScore
from schemas.vocabulary import SCORE_DUE_EVENT
from services.orchestrator.domain import steps
from services.orchestrator.domain.effects import (
    Effects,
    EnrollmentChange,
    ScoreDue,
    StageChange,
    Timer,
)
from services.orchestrator.domain.lead import Enrollment, Lead
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import TOO_OLD, Program
from services.orchestrator.domain.stages import (
    crossed,
    initial_stage,
    next_stage,
    update_record,
)


class Decider:
    def __init__(self, programs: Sequence[Program], policy: ContactPolicy,
                 stage_model: str = "b2b") -> None:
        # highest priority first: when programs compete for the contact budget in one decision,
        # the more important one gets the slot and the others are deferred
        self.programs = {p.id: p for p in sorted(programs, key=lambda p: (-p.priority, p.id))}
        self.policy = policy
        self.stage_model = stage_model

    # --- entry points: the lead given is left as it was; the new one is returned ---------------

    def decide_event(self, lead: Lead | None, lead_id: str, event: Mapping[str, Any],
                     scores: Mapping[str, ModelScore], *, event_time: float,
                     now: float, scored_at: float | None = None) -> tuple[Lead, Effects]:
        """A scored event for `lead_id` (`lead` None: seen for the first time); `scored_at`:
        the time its scores are as of (default `event_time`)."""
        return self.on_event_for(None if lead is None else lead.copy(), lead_id, event, scores,
                                 event_time=event_time, now=now, scored_at=scored_at)

    def decide_timer(self, lead: Lead, timer: Timer, now: float) -> tuple[Lead, Effects]:
        new = lead.copy()
        return new, self.on_timer(new, timer, now)

    def decide_enroll(self, lead: Lead, program_id: str, now: float, *,
                      cause: str) -> tuple[Lead, Effects, str | None]:
        """Enroll through the API: (new lead, effects, None), or the lead unchanged, no effects
        and why it may not enter (KeyError for an unknown program)."""
        why = self.eligible(lead, self.programs[program_id], now)
        if why is not None:
            return lead, Effects(), why
        new = lead.copy()
        return new, self.enroll(new, program_id, now, cause=cause), None

    def decide_unenroll(self, lead: Lead, program_id: str, now: float) -> tuple[Lead, Effects]:
        new = lead.copy()
        return new, self.unenroll(new, program_id, now)

    # --- the same decisions, in place on a lead the caller owns --------------------------------

    def new_lead(self, lead_id: str, etype: str, data: Mapping[str, Any], now: float,
                 fx: Effects) -> Lead:
        """A lead seen for the first time; its first stage goes into the history."""
        stage = initial_stage(etype, data)
        lead = Lead(lead_id=lead_id, stage="subscriber", stage_entered_at=now, created_at=now)
        reached = lead.reach(stage)  # from before the funnel: every stage up to `stage`
        lead.stage = stage
        fx.stage_changes.append(StageChange(lead_id, None, stage, now, "first seen",
                                            reached=reached))
        return lead

    def on_event_for(self, lead: Lead | None, lead_id: str, event: Mapping[str, Any],
                     scores: Mapping[str, ModelScore], *, event_time: float,
                     now: float, scored_at: float | None = None) -> tuple[Lead, Effects]:
        """`on_event`, creating the lead when `lead` is None."""
        fx = Effects()
        if lead is None:
            data = event.get("data")
            lead = self.new_lead(lead_id, str(event.get("type")),
                                 data if isinstance(data, Mapping) else {}, now, fx)
        more = self.on_event(lead, event, scores, event_time=event_time, now=now,
                             scored_at=scored_at)
        for name in ("commands", "stage_changes", "timers", "notes", "enrollments",
                     "scores_due"):
            getattr(fx, name).extend(getattr(more, name))
        # what this event caused at once carries its time, for the end-to-end latency, and
        # its id, so that dispatch's log lines lead back to it
        fx.event_id = str(event.get("id"))
        fx.commands = [replace(c, event_time=event_time, event_id=fx.event_id)
                       for c in fx.commands]
        return lead, fx

    def on_event(self, lead: Lead, event: Mapping[str, Any], scores: Mapping[str, ModelScore],
                 *, event_time: float, now: float, scored_at: float | None = None) -> Effects:
        """A scored event for this lead."""
        fx = Effects()
        etype = str(event.get("type"))
        data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
        assert isinstance(data, Mapping)
        previous_activity = lead.last_activity_at
        profile_changed = update_record(lead, etype, data, scores, event_time, scored_at)
        self._schedule_decay(lead, scores, fx)
        change = next_stage(lead, etype, data, scores, self.stage_model)
        decayed = etype == SCORE_DUE_EVENT  # the time it happened is the event's, however late
        age = 0.0 if decayed else now - event_time  # what the event starts honors its own time
        if change:
            # (never before the lead entered its current stage: history stays in order)
            at = max(min(event_time, now), lead.stage_entered_at) if decayed else now
            self.set_stage(lead, change[0], change[1], now, fx, event_age=age, at=at)
        for enr in sorted(lead.active_enrollments(), key=self._rank):
            self._event_for_enrollment(lead, enr, etype, data, now, fx)
        for program in self.programs.values():
            if self._triggered(program, lead, etype, data, scores):
                trig = program.trigger
                crossing = "crossed" if trig.direction == "up" else "fell below"
                cause = f"{trig.model} {crossing} {trig.threshold} on {etype}" \
                    if trig.kind == "threshold" else f"event {etype}"
                self._enroll(lead, program, now, fx, cause=cause, event_age=age)
        if lead.last_activity_at != previous_activity:
            self._schedule_inactivity(lead, fx)
        if profile_changed:
            self._schedule_dates(lead, now, fx)
        return fx

    def on_timer(self, lead: Lead, timer: Timer, now: float) -> Effects:
        fx = Effects()
        if timer.kind == "score":  # the model's id in `program_id`; a moved crossing is stale
            if lead.score_due.get(timer.program_id) == timer.due_at:
                del lead.score_due[timer.program_id]
                fx.scores_due.append(ScoreDue(timer.program_id, timer.due_at))
            return fx
        program = self.programs.get(timer.program_id)
        if program is None:
            return fx
        if timer.kind == "step":
            enr = lead.enrollments.get(program.id)
            if enr and enr.active and enr.generation == timer.generation and enr.waiting \
                    and self._current(lead, program, enr, now, fx):
                enr.waiting = "fired"
                self._advance(lead, program, enr, now, fx)
        elif timer.kind == "inactivity":
            idle = program.trigger.inactive_seconds
            if lead.last_activity_at is not None and lead.last_activity_at + idle <= now:
                self._enroll(lead, program, now, fx, cause="inactivity")
        elif timer.kind == "date" and lead.scheduled_dates.get(program.id) == timer.due_at:
            self._enroll(lead, program, now, fx, cause="date")
        return fx

    def enroll(self, lead: Lead, program_id: str, now: float, *, cause: str = "manual") -> Effects:
        """Enroll through the API; raises KeyError for an unknown program."""
        fx = Effects()
        self._enroll(lead, self.programs[program_id], now, fx, cause=cause, manual=True)
        return fx

    def unenroll(self, lead: Lead, program_id: str, now: float) -> Effects:
        fx = Effects()
        enr = lead.enrollments.get(program_id)
        if enr and enr.active:
            steps.finish(lead, enr, "exited", "removed manually", now, fx)
        return fx

    def _rank(self, enr: Enrollment) -> int:
        program = self.programs.get(enr.program_id)
        return -(program.priority if program else 0)

    # --- stages -------------------------------------------------------------------------------

    def set_stage(self, lead: Lead, stage: str, cause: str, now: float, fx: Effects, *,
                  event_age: float | None = None, at: float | None = None) -> None:
        """Move the lead to `stage` (decided `now`; `at`: when it happened, if earlier, as for
        a score that decayed below a threshold while the clock was moved past it)."""
        if stage == lead.stage:
            return
        at = now if at is None else at
        fx.stage_changes.append(StageChange(
            lead.lead_id, lead.stage, stage, at, cause, entered_at=lead.stage_entered_at,
            created_at=lead.created_at, nurtured=bool(lead.enrollments),
            reached=lead.reach(stage)))
        lead.stage, lead.stage_entered_at = stage, at
        if stage == "cold":
            lead.suppressed["all"] = "cold"
        elif lead.suppressed.get("all") == "cold":
            del lead.suppressed["all"]
        for enr in lead.active_enrollments():
            program = self.programs.get(enr.program_id)
            if program and stage in program.exclude_stages:
                steps.finish(lead, enr, "exited", f"stage changed to {stage}", now, fx)
        for program in self.programs.values():
            if program.trigger.kind == "stage" and program.trigger.stage == stage:
                self._enroll(lead, program, now, fx, cause=f"entered {stage}",
                             event_age=event_age)

    # --- enrollments --------------------------------------------------------------------------

    def _triggered(self, program: Program, lead: Lead, etype: str, data: Mapping[str, Any],
                   scores: Mapping[str, ModelScore]) -> bool:
        trig = program.trigger
        if trig.kind == "event" and trig.event is not None:
            return trig.event.matches(etype, data)
        if trig.kind == "threshold" and trig.model and trig.threshold:
            return crossed(scores, trig.model, trig.threshold) == trig.direction
        return False

    def eligible(self, lead: Lead, program: Program, now: float) -> str | None:
        """Why `lead` may not enter `program` now, or None if it may."""
        current = lead.enrollments.get(program.id)
        if current and current.active:
            return "already enrolled"
        ended = lead.last_exit.get(program.id)
        if ended is not None and program.reentry == "never":
            return "no re-entry"
        if ended is not None and program.reentry == "after" \
                and now - ended < program.reentry_after_seconds:
            return "re-entry too soon"
        if program.stages is not None and lead.stage not in program.stages:
            return f"stage {lead.stage} not allowed"
        if lead.stage in program.exclude_stages:
            return f"stage {lead.stage} excluded"
        if not program.entry(steps.facts(lead, None)):
            return "entry conditions not met"
        return None

    def _enroll(self, lead: Lead, program: Program, now: float, fx: Effects, *, cause: str,
                manual: bool = False, event_age: float | None = None) -> None:
        """Enroll if eligible; `event_age`: how old the event that caused it is (None: no event,
        e.g. a timer or the API), checked against the program's max_event_age."""
        if program.trigger.kind == "manual" and not manual:
            return
        if self.eligible(lead, program, now) is not None:
            return
        limit = program.max_event_age_seconds
        if event_age is not None and limit is not None and event_age > limit:
            fx.enrollments.append(EnrollmentChange(program.id, "skipped", TOO_OLD, now))
            return
        lead.enrollment_count += 1
        enr = Enrollment(program.id, program.version, entered_at=now, seq=lead.enrollment_count)
        lead.enrollments[program.id] = enr
        fx.enrollments.append(EnrollmentChange(program.id, "entered", cause, now))
        self._advance(lead, program, enr, now, fx)

    def _event_for_enrollment(self, lead: Lead, enr: Enrollment, etype: str,
                              data: Mapping[str, Any], now: float, fx: Effects) -> None:
        program = self.programs.get(enr.program_id)
        if program is None or not self._current(lead, program, enr, now, fx):
            return
        enr.since[etype] = enr.since.get(etype, 0) + 1
        if program.goal and program.goal.matches(etype, data):
            steps.finish(lead, enr, "exited", "goal", now, fx)
        elif etype == "email.unsubscribed" and program.exit_on_unsubscribe:
            steps.finish(lead, enr, "exited", "unsubscribed", now, fx)
        elif enr.waiting == "event" and enr.step < len(program.steps):
            step = program.steps[enr.step]
            if step.event and step.event.matches(etype, data):
                steps.goto(enr, program.index_of(step.on_event, enr.step))
                self._advance(lead, program, enr, now, fx)

    def _current(self, lead: Lead, program: Program, enr: Enrollment, now: float,
                 fx: Effects) -> bool:
        """Carry an enrollment over a program edit: it continues at the step with the same id
        in the new version (waiting as it was); if that step is gone it ends ("program
        changed"). False when the enrollment ended here."""
        if enr.program_version == program.version:
            return True
        index = program.step_index.get(enr.step_id or "")
        if index is None:
            steps.finish(lead, enr, "exited", "program changed", now, fx)
            return False
        enr.step, enr.program_version = index, program.version
        return True

    def _advance(self, lead: Lead, program: Program, enr: Enrollment, now: float,
                 fx: Effects) -> None:
        for handoff in steps.advance(lead, program, enr, now, fx, self.policy):
            if isinstance(handoff, steps.SetStage):
                self.set_stage(lead, handoff.stage, f"program {program.id}", now, fx)
            elif handoff.program in self.programs:
                self._enroll(lead, self.programs[handoff.program], now, fx,
                             cause=f"program {program.id}", manual=True)

    def _schedule_decay(self, lead: Lead, scores: Mapping[str, ModelScore],
                        fx: Effects) -> None:
        """One timer per model at the time decay alone takes the score across a threshold (the
        scored event's `next_crossing`); a new time replaces it, none cancels it."""
        for model, score in scores.items():
            due = None if score.next_crossing is None else score.next_crossing.at.timestamp()
            if due == lead.score_due.get(model):
                continue
            if due is None:
                del lead.score_due[model]
            else:
                lead.score_due[model] = due
                fx.timers.append(Timer(due, "score", model))

    def _schedule_inactivity(self, lead: Lead, fx: Effects) -> None:
        assert lead.last_activity_at is not None
        for program in self.programs.values():
            if program.trigger.kind == "inactivity":
                fx.timers.append(Timer(lead.last_activity_at + program.trigger.inactive_seconds,
                                       "inactivity", program.id))

    def _schedule_dates(self, lead: Lead, now: float, fx: Effects) -> None:
        for program in self.programs.values():
            trig = program.trigger
            if trig.kind != "date" or not trig.date_field:
                continue
            raw = lead.profile.get(trig.date_field)
            try:
                day = datetime.fromisoformat(str(raw)).replace(tzinfo=UTC)
            except ValueError:
                continue
            due = day.timestamp() + trig.offset_seconds
            if due > now and lead.scheduled_dates.get(program.id) != due:
                lead.scheduled_dates[program.id] = due
                fx.timers.append(Timer(due, "date", program.id))

