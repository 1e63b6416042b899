"""Running a program's steps for one enrollment (pure). `advance` runs steps until one must wait
(a timer, an event, a deferred send) or the program ends; stage changes and enrollments in other
programs are handed back to the Decider, which owns those rules."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from services.orchestrator.domain import policy as contact
from services.orchestrator.domain.effects import Command, Effects, EnrollmentChange, Note, Timer
from services.orchestrator.domain.lead import Enrollment, Lead
from services.orchestrator.domain.program import Program, Step

MAX_STEPS_PER_ADVANCE = 100  # a program that loops without waiting stops here
CONTEXT_FIELDS = ("first_name", "last_name", "email", "phone", "title", "company", "industry",
                  "country", "timezone", "owner_id", "seniority")


def message_id(lead_id: str, enr: Enrollment, step_id: str) -> str:
    """Deterministic id of the message a step sends in this enrollment at this point."""
    raw = f"{lead_id}|{enr.key}|{step_id}|{enr.generation}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def facts(lead: Lead, enr: Enrollment | None) -> dict[str, Any]:
    """What `when:` conditions of programs see: the profile (flattened: `consent.email`), plus
    `stage`, `journey_stage`, `interests`, `tags`, `score.<model>`, `above.<model>` and, inside
    an enrollment, `since.<event type>` (how often it happened since the lead entered)."""
    return {
        **lead.profile,
        "stage": lead.stage, "journey_stage": lead.journey_stage, "interests": lead.interests,
        "tags": lead.tags,
        "score": {m: s.get("total") for m, s in lead.scores.items()},
        "above": {m: s.get("above") or [] for m, s in lead.scores.items()},
        "since": dict(enr.since) if enr else {},
        # event types contain dots, so `since.product.activity` is looked up as a flat key
        **({f"since.{etype}": n for etype, n in enr.since.items()} if enr else {}),
    }


def goto(enr: Enrollment, index: int) -> None:
    enr.step, enr.waiting, enr.wake_at = index, None, None
    enr.generation += 1


def wait_until(enr: Enrollment, kind: str, when: float, program_id: str, fx: Effects) -> None:
    enr.waiting, enr.wake_at = kind, when
    enr.generation += 1
    fx.timers.append(Timer(when, "step", program_id, enr.generation))


def finish(lead: Lead, enr: Enrollment, status: str, reason: str, now: float,
           fx: Effects) -> None:
    enr.status, enr.exit_reason, enr.exited_at = status, reason, now
    enr.waiting, enr.wake_at = None, None
    enr.generation += 1
    lead.last_exit[enr.program_id] = now
    fx.enrollments.append(EnrollmentChange(enr.program_id, status, reason, now))


def context(lead: Lead) -> dict[str, Any]:
    ctx = {k: lead.profile[k] for k in CONTEXT_FIELDS if k in lead.profile}
    ctx.update(interests=lead.interests, journey_stage=lead.journey_stage, stage=lead.stage,
               scores={m: {"total": s.get("total"), "breakdown": [
                   {"rule": c["rule"], "points": c["points"]} for c in s.get("breakdown") or ()]}
                       for m, s in lead.scores.items()})
    return ctx


def _send(lead: Lead, program: Program, enr: Enrollment, step: Step, now: float, fx: Effects,
          policy: contact.ContactPolicy) -> bool:
    """Send (or hold) the step's message; True when the enrollment may move on. A held message
    expires `expires_after` after it was first due (if the step sets one)."""
    channel = step.channel or ("crm_task" if step.kind == "task" else "email")
    first_due = enr.held_since if enr.held_since is not None else now
    expires_at = first_due + step.expires_seconds if step.expires_seconds else None
    verdict = contact.check(policy, lead, channel, now, expires_at=expires_at)
    if verdict.action == "defer":
        assert verdict.until is not None
        enr.held_since = first_due
        fx.notes.append(Note(program.id, step.id, channel, "deferred", verdict.reason, now,
                             verdict.until))
        wait_until(enr, "timer", verdict.until, program.id, fx)
        return False
    enr.held_since = None
    if verdict.action == "drop":
        fx.notes.append(Note(program.id, step.id, channel, "dropped", verdict.reason, now))
        return True
    mid = message_id(lead.lead_id, enr, step.id)
    fx.commands.append(Command(
        message_id=mid, lead_id=lead.lead_id, channel=channel, program_id=program.id,
        program_version=program.version, step_id=step.id, template=step.template,
        context=context(lead), created_at=now, expires_at=expires_at, subject=step.subject,
        due_at=now + step.due_seconds if channel == "crm_task" else None))
    fx.notes.append(Note(program.id, step.id, channel, "sent", None, now, message_id=mid))
    contact.record(lead, channel, program.id, now, policy)
    return True


@dataclass(frozen=True, slots=True)
class SetStage:
    """A `set_stage` step asks the decider to move the lead to `stage`."""

    stage: str


@dataclass(frozen=True, slots=True)
class EnrollIn:
    """An `enroll` step asks the decider to enroll the lead in `program`."""

    program: str


Handoff = SetStage | EnrollIn
"""What a program's steps leave to the decider (it owns stages and enrollments)."""


def _run(lead: Lead, program: Program, enr: Enrollment, step: Step, now: float, fx: Effects,
         policy: contact.ContactPolicy, handoff: list[Handoff]) -> int | None:
    """Run one step: the index to go to next, or None to stop here (waiting or finished)."""
    here = enr.step
    if step.kind == "wait":
        if enr.waiting == "fired":
            return program.index_of(step.next, here)
        wait_until(enr, "timer", now + step.seconds, program.id, fx)
        return None
    if step.kind == "wait_for":
        if enr.waiting == "fired":  # timed out
            return program.index_of(step.on_timeout, here)
        wait_until(enr, "event", now + step.seconds, program.id, fx)
        return None
    if step.kind == "branch":
        seen = facts(lead, enr)
        target = next((b.goto for b in step.branches if b.when(seen)), step.otherwise)
        return program.index_of(target, here)
    if step.kind in ("send", "task") and not _send(lead, program, enr, step, now, fx, policy):
        return None
    if step.kind == "tag":
        if step.tag and step.tag not in lead.tags:
            lead.tags.append(step.tag)
    elif step.kind == "set_stage":
        handoff.append(SetStage(step.stage or ""))
    elif step.kind == "enroll":
        handoff.append(EnrollIn(step.program or ""))
    elif step.kind == "exit":
        finish(lead, enr, "exited", step.reason or "exit step", now, fx)
        return None
    return program.index_of(step.next, here)


def advance(lead: Lead, program: Program, enr: Enrollment, now: float, fx: Effects,
            policy: contact.ContactPolicy) -> list[Handoff]:
    """Run steps from the enrollment's current one; return what they leave to the decider."""
    handoff: list[Handoff] = []
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if not enr.active:
            break
        if enr.step >= len(program.steps):
            finish(lead, enr, "completed", "completed", now, fx)
            break
        enr.step_id = program.steps[enr.step].id
        nxt = _run(lead, program, enr, program.steps[enr.step], now, fx, policy, handoff)
        if nxt is None:
            break
        goto(enr, nxt)
    else:
        finish(lead, enr, "exited", "too many steps without a wait", now, fx)
    return handoff
