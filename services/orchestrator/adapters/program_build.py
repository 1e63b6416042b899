"""Building one `Program` from a schema-valid program file, checking what the schema cannot.

Used by `services.orchestrator.adapters.program_files`: every semantic problem (a trigger with two
kinds, a step pointing to a step that does not exist, an unknown stage or event type, an invalid
condition, a loop without a wait, ...) is added to the file with its line, and building goes on,
so that one attempt reports them all. Checks that need every file (duplicate program ids,
`enroll` targets) are left to the caller: `ProgramBuilder.enrolls` lists the targets.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from schemas import EVENT_TYPES
from services.common.config.conditions import ConditionError, Predicate, always, compile_condition
from services.common.config.durations import DURATION_PROBLEM, parse_duration
from services.common.config.files import ConfigFile, Parts
from services.orchestrator.domain.lead import STAGES
from services.orchestrator.domain.program import (
    DEFAULT_MAX_EVENT_AGE_SECONDS,
    Branch,
    EventMatch,
    Program,
    Reentry,
    Step,
    StepKind,
    Trigger,
)

TRIGGER_KINDS = ("event", "stage", "threshold", "inactivity", "date")
ACTIONS: tuple[StepKind, ...] = ("wait", "wait_for", "send", "task", "branch", "set_stage",
                                 "tag", "enroll", "exit")
WAITING = frozenset({"wait", "wait_for"})


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """A hint naming the closest of `known` (" (did you mean 'x'?)"), or "" if none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class ProgramBuilder:
    """Builds a `Program` from one schema-valid file, adding a problem for each semantic error."""

    def __init__(self, file: ConfigFile) -> None:
        self.file = file
        self.enrolls: list[tuple[Parts, str]] = []
        """(path, program id) of each `enroll` step, for the caller to check across files."""
        self.step_ids: set[str] = set()

    def program(self, data: Mapping[str, Any]) -> Program | None:
        """The program in `data`, or None if the file has problems."""
        entry = data.get("entry", {})
        reentry, after = self.reentry(data.get("reentry", "never"))
        age = data.get("max_event_age")
        program = Program(
            id=data["id"], version=data["version"], name=data["name"],
            description=data.get("description", ""), priority=data.get("priority", 50),
            trigger=self.trigger(data["trigger"]), steps=self.steps(data["steps"]),
            entry=self.when(entry.get("when"), ("entry",)),
            stages=self.stages(entry["stages"], ("entry", "stages")) if "stages" in entry
            else None,
            exclude_stages=self.stages(data.get("exclude_stages", []), ("exclude_stages",)),
            reentry=reentry, reentry_after_seconds=after,
            max_event_age_seconds=DEFAULT_MAX_EVENT_AGE_SECONDS if age is None else None
            if age == "none" else self.seconds(age, ("max_event_age",)),
            goal=self.match(data["goal"], ("goal",)) if "goal" in data else None,
            exit_on_unsubscribe=data.get("exit_on_unsubscribe", True))
        self.check_excluded(program, entry)
        return None if self.file.problems else program

    # -- program level ---------------------------------------------------------------------

    def trigger(self, spec: str | Mapping[str, Any]) -> Trigger:
        if isinstance(spec, str):  # the schema allows only "manual"
            return Trigger("manual")
        kinds = [kind for kind in TRIGGER_KINDS if kind in spec]
        if len(kinds) != 1:
            found = f"found {', '.join(kinds)}" if kinds else "or write trigger: manual"
            self.file.add(("trigger",), "needs exactly one kind of trigger: event, stage, "
                          f"threshold, inactivity or date ({found})")
            return Trigger("manual")
        kind = kinds[0]
        if "when" in spec and kind != "event":
            self.file.add(("trigger", "when"), "only applies to an event trigger")
        at: Parts = ("trigger", kind)
        if kind == "event":
            return Trigger("event", event=self.match(spec, ("trigger",)))
        if kind == "stage":
            return Trigger("stage", stage=self.stage(spec["stage"], at))
        if kind == "threshold":
            return Trigger("threshold", model=spec["threshold"]["model"],
                           threshold=spec["threshold"]["name"],
                           direction=spec["threshold"].get("direction", "up"))
        if kind == "inactivity":
            return Trigger("inactivity", inactive_seconds=self.seconds(spec["inactivity"], at))
        date = spec["date"]
        offset = self.offset(date["offset"], (*at, "offset")) if "offset" in date else 0
        return Trigger("date", date_field=date["field"], offset_seconds=offset)

    def reentry(self, text: str) -> tuple[Reentry, int]:
        if text in ("never", "always"):
            return ("never" if text == "never" else "always"), 0
        return "after", self.seconds(text, ("reentry",))

    def check_excluded(self, program: Program, entry: Mapping[str, Any]) -> None:
        """Stages a program starts from must not be stages it excludes."""
        trigger = program.trigger
        if trigger.kind == "stage" and trigger.stage in program.exclude_stages:
            self.file.add(("trigger", "stage"), "is in exclude_stages: nobody could ever enroll")
        for i, stage in enumerate(entry.get("stages", [])):
            if stage in program.exclude_stages:
                self.file.add(("entry", "stages", i), f"'{stage}' is also in exclude_stages")

    # -- steps -----------------------------------------------------------------------------

    def steps(self, items: Sequence[Mapping[str, Any]]) -> tuple[Step, ...]:
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            earlier = first.setdefault(item["id"], i)
            if earlier != i:
                self.file.add(("steps", i, "id"), f"duplicate step id '{item['id']}' (first used "
                              f"at steps[{earlier}], line {self.file.line_of(('steps', earlier))})")
        self.step_ids = set(first)
        steps = tuple(self.step(item, ("steps", i)) for i, item in enumerate(items))
        if (loop := find_loop(steps)) is not None:
            self.file.add(("steps", loop[0]), f"goes back to step '{loop[1]}' without a wait or "
                          "wait_for in between: the lead would go round in circles")
        return steps

    def step(self, item: Mapping[str, Any], at: Parts) -> Step:
        actions = [action for action in ACTIONS if action in item]
        if len(actions) != 1:
            found = f" (found {', '.join(actions)})" if actions else ""
            self.file.add(at, f"needs exactly one action: {', '.join(ACTIONS)}{found}")
            return Step(item["id"], "exit")
        kind = actions[0]
        if "otherwise" in item and kind != "branch":
            self.file.add((*at, "otherwise"), "only applies to a branch step")
        if "next" in item and kind == "exit":
            self.file.add((*at, "next"), "an exit step ends the enrollment: nothing comes next")
        nxt = self.target(item.get("next"), (*at, "next"))
        fields = getattr(self, f"_{kind}")(item, at, nxt)  # the Step fields of that kind
        return Step(item["id"], kind, next=nxt, **fields)

    # one method per action: (the step, its path, its `next`) -> the Step fields of that kind

    def _wait(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        return {"seconds": self.seconds(item["wait"], (*at, "wait"))}

    def _wait_for(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        spec, at = item["wait_for"], (*at, "wait_for")
        return {"event": self.match(spec, at),
                "seconds": self.seconds(spec["timeout"], (*at, "timeout")),
                "on_event": self.target(spec.get("then"), (*at, "then")) or nxt,
                "on_timeout": self.target(spec.get("on_timeout"), (*at, "on_timeout")) or nxt}

    def _send(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        spec, expires = item["send"], item["send"].get("expires_after")
        return {"channel": spec["channel"], "template": spec["template"],
                "expires_seconds": None if expires is None
                else self.seconds(expires, (*at, "send", "expires_after"))}

    def _task(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        spec = item["task"]
        return {"channel": "crm_task", "subject": spec["subject"],
                "due_seconds": self.seconds(spec.get("due", "1d"), (*at, "task", "due")),
                "template": spec.get("template")}

    def _branch(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        branches = []
        for i, spec in enumerate(item["branch"]):
            self.target(spec["goto"], (*at, "branch", i, "goto"))
            branches.append(Branch(self.when(spec["when"], (*at, "branch", i)), spec["goto"]))
        otherwise = self.target(item.get("otherwise"), (*at, "otherwise"))
        return {"branches": tuple(branches), "otherwise": otherwise or nxt}

    def _set_stage(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        return {"stage": self.stage(item["set_stage"], (*at, "set_stage"))}

    def _tag(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        return {"tag": item["tag"]}

    def _enroll(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        self.enrolls.append(((*at, "enroll"), item["enroll"]))
        return {"program": item["enroll"]}

    def _exit(self, item: Mapping[str, Any], at: Parts, nxt: str | None) -> dict[str, Any]:
        return {"reason": item["exit"]}

    # -- values ----------------------------------------------------------------------------

    def target(self, step_id: str | None, at: Parts) -> str | None:
        """`step_id` (a step this one leads to), after checking the program has it."""
        if step_id is not None and step_id not in self.step_ids:
            self.file.add(at, f"no step '{step_id}' in this program"
                          + did_you_mean(step_id, self.step_ids))
        return step_id

    def stage(self, name: str, at: Parts) -> str:
        if name not in STAGES:
            self.file.add(at, f"unknown stage '{name}'" + (did_you_mean(name, STAGES) or
                                                           f" (one of: {', '.join(STAGES)})"))
        return name

    def stages(self, names: Sequence[str], at: Parts) -> frozenset[str]:
        return frozenset(self.stage(name, (*at, i)) for i, name in enumerate(names))

    def match(self, spec: Mapping[str, Any], at: Parts) -> EventMatch:
        """The `event` (+ `when`) of `spec` at `at`."""
        return EventMatch(self.types(spec["event"], (*at, "event")),
                          self.when(spec.get("when"), at))

    def types(self, on: str | list[str], at: Parts) -> frozenset[str]:
        """The event types matching `on` (a type, a glob or a list of them)."""
        found: set[str] = set()
        items = [(at, on)] if isinstance(on, str) else [((*at, i), p) for i, p in enumerate(on)]
        for where, pattern in items:
            matched = {etype for etype in EVENT_TYPES if fnmatch.fnmatchcase(etype, pattern)}
            if not matched:
                self.file.add(where, "matches no known event type" + (
                    did_you_mean(pattern, EVENT_TYPES) or " (see schemas/README.md)"))
            found |= matched
        return frozenset(found)

    def when(self, spec: Mapping[str, Any] | None, at: Parts) -> Predicate:
        """The compiled `when` condition below `at` (always true when absent)."""
        try:
            return always if spec is None else compile_condition(spec)
        except ConditionError as exc:
            self.file.add((*at, "when", *exc.parts), exc.message)
            return always

    def offset(self, text: str, at: Parts) -> int:
        """The seconds of a date offset; `-90d` is 90 days before the date."""
        return -self.seconds(text[1:], at) if text.startswith("-") else self.seconds(text, at)

    def seconds(self, text: str, at: Parts) -> int:
        try:
            return parse_duration(text)
        except ValueError:  # the schema checks the pattern; this keeps a bad file from crashing
            self.file.add(at, DURATION_PROBLEM)
            return 1


def find_loop(steps: Sequence[Step]) -> tuple[int, str] | None:
    """(index of a step, id of the step it goes back to) closing a loop without a wait or
    wait_for in it, or None. Such a loop would run until the step limit ends the enrollment."""
    index = {step.id: i for i, step in enumerate(steps)}

    def successors(i: int) -> Iterator[int]:
        step = steps[i]
        if step.kind in WAITING or step.kind == "exit":
            return iter(())
        targets = [*(b.goto for b in step.branches), step.otherwise] \
            if step.kind == "branch" else [step.next]
        found = (i + 1 if t is None else index.get(t, len(steps)) for t in targets)
        return (j for j in found if j < len(steps))

    state = [0] * len(steps)  # 0: not seen, 1: on the current path, 2: done
    for start, _ in enumerate(steps):
        if state[start]:
            continue
        state[start], path = 1, [(start, successors(start))]
        while path:  # depth first, without recursion: a program may be long
            i, rest = path[-1]
            j = next(rest, None)
            if j is None:
                state[i] = 2
                path.pop()
            elif state[j] == 1:
                return i, steps[j].id
            elif state[j] == 0:
                state[j] = 1
                path.append((j, successors(j)))
    return None
