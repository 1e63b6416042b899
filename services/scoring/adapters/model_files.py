"""Scoring model files (config as code): YAML files in, frozen `ScoringModel`s out.

`load_models(paths)` reads every file (a directory means its `*.yaml` / `*.yml` files) with
`services.common.config.files`, which validates each against
`schemas/config/scoring-model.schema.json`; this module checks what a schema cannot (unique rule
ids, event types that exist, valid conditions, ...) and builds the models. Every problem of every
file is collected with file, line, path and reason, and `ModelFileError` lists them all, so one
start-up attempt shows everything to fix.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import schemas
from schemas import EVENT_TYPES
from services.common.config.conditions import ConditionError, Predicate, always, compile_condition
from services.common.config.durations import DURATION_PROBLEM, SECONDS_PER_DAY, parse_duration
from services.common.config.files import (
    NO_FILE,
    ROOT,
    ConfigFile,
    ConfigFileError,
    ConfigProblem,
    Parts,
    format_parts,
    read_config_files,
)
from services.scoring.domain.model import (
    Cap,
    EngagementRule,
    FitRule,
    JourneyRule,
    ScoringModel,
)

SCHEMA_PATH = Path(schemas.__file__).parent / "config" / "scoring-model.schema.json"
_KIND = "scoring model"  # in messages: "2 problems in scoring model files:"

_NAME = "must be a lowercase letter and at most {} more lowercase letters, digits, '_' or '-'"
_PATTERNS = {"^[a-z][a-z0-9_-]{0,39}$": _NAME.format(39),
             "^[a-z][a-z0-9_-]{0,63}$": _NAME.format(63)}


class ModelFileError(ConfigFileError):
    """Scoring model files are invalid; `problems` holds every problem found, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        super().__init__(problems, kind=_KIND)


def load_or_report(paths: Sequence[str | Path]) -> list[ScoringModel] | None:
    """`load_models`, or None after printing every problem to stderr (for the commands)."""
    try:
        return load_models(paths)
    except ModelFileError as exc:
        print(exc, file=sys.stderr)
        return None


def load_models(paths: Sequence[str | Path]) -> list[ScoringModel]:
    """Load the scoring models in `paths` (files, or directories of `*.yaml` / `*.yml`).

    Raises ModelFileError listing every problem of every file, including model ids used twice.
    """
    if not paths:  # worded as it always was, not "no scoring model files given"
        raise ModelFileError([ConfigProblem(NO_FILE, None, ROOT, "no model files given")])
    files = read_config_files(paths, schema=SCHEMA_PATH, kind=_KIND, pattern_messages=_PATTERNS)
    models: list[ScoringModel] = []
    defined: dict[str, str] = {}  # model id -> "file:line" of its first definition
    for file in files:
        model = _Builder(file).model(file.data)
        if model is not None and model.id in defined:
            file.add(("id",), f"duplicate model id '{model.id}' (also in {defined[model.id]})")
        elif model is not None:
            defined[model.id] = f"{file.file}:{file.line_of(('id',))}"
            models.append(model)
    if problems := files.problems:
        raise ModelFileError(problems)
    return models


# -- what a schema cannot check, while building the model ------------------------------------


class _Builder:
    """Builds a `ScoringModel` from schema-valid data, adding a problem for each semantic error."""

    def __init__(self, file: ConfigFile) -> None:
        self.file = file

    def model(self, data: dict[str, Any]) -> ScoringModel | None:
        cap, interests = data.get("engagement_cap", {}), data.get("interests", {})
        journey = data.get("journey", {})
        self.check_rule_ids(data)
        if "max" in cap and "min" in cap and not cap["max"] > cap["min"]:
            self.file.add(("engagement_cap", "max"), f"must be greater than min ({cap['min']})")
        model = ScoringModel(
            id=data["id"], version=int(data["version"]), description=data.get("description", ""),
            half_life_days=self.days(data["half_life"], ("half_life",)),
            late_tolerance_days=self.days(data.get("late_tolerance", "7d"), ("late_tolerance",)),
            thresholds={name: float(points) for name, points in data["thresholds"].items()},
            fit=tuple(self.fit(rule, ("fit", i)) for i, rule in enumerate(data.get("fit", []))),
            engagement=tuple(self.engagement(rule, ("engagement", i))
                             for i, rule in enumerate(data.get("engagement", []))),
            engagement_max=float(cap["max"]) if "max" in cap else None,
            engagement_min=float(cap["min"]) if "min" in cap else None,
            interest_on=self.types(interests.get("on", []), ("interests", "on")),
            interest_fields=tuple(interests.get("fields", ["content_topics"])),
            journey=tuple(self.journey(rule, ("journey", "rules", i))
                          for i, rule in enumerate(journey.get("rules", []))),
            journey_window_days=self.days(journey.get("window", "90d"), ("journey", "window")),
        )
        return None if self.file.problems else model

    def fit(self, rule: dict[str, Any], at: Parts) -> FitRule:
        return FitRule(rule["id"], float(rule["points"]),
                       self.when(rule.get("when"), at), rule.get("description", ""))

    def engagement(self, rule: dict[str, Any], at: Parts) -> EngagementRule:
        cap = rule.get("cap")
        return EngagementRule(
            rule["id"], self.types(rule["on"], (*at, "on")),
            float(rule["points"]), self.when(rule.get("when"), at),
            None if cap is None else Cap(float(cap["points"]),
                                         self.seconds(cap["per"], (*at, "cap", "per"))),
            rule.get("description", ""))

    def journey(self, rule: dict[str, Any], at: Parts) -> JourneyRule:
        return JourneyRule(rule["stage"], self.types(rule["on"], (*at, "on")),
                           self.when(rule.get("when"), at))

    def check_rule_ids(self, data: dict[str, Any]) -> None:
        """Rule ids are unique across fit and engagement; the later one (by line) is reported."""
        rules = [((section, i), rule["id"]) for section in ("fit", "engagement")
                 for i, rule in enumerate(data.get(section, []))]
        first: dict[str, Parts] = {}
        for at, rule_id in sorted(rules, key=lambda rule: self.file.line_of(rule[0]) or 0):
            earlier = first.setdefault(rule_id, at)
            if earlier != at:
                self.file.add((*at, "id"), f"duplicate rule id '{rule_id}' (first used at "
                              f"{format_parts(earlier)}, line {self.file.line_of(earlier)})")

    def types(self, on: str | list[str], at: Parts) -> frozenset[str]:
        """The event types matching `on` (a type, a glob or a list of them)."""
        found: set[str] = set()
        items = [(at, on)] if isinstance(on, str) else [((*at, i), p) for i, p in enumerate(on)]
        for where, pattern in items:
            matched = {etype for etype in EVENT_TYPES if fnmatch.fnmatchcase(etype, pattern)}
            if not matched:
                close = difflib.get_close_matches(pattern, sorted(EVENT_TYPES), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "see schemas/README.md"
                self.file.add(where, f"matches no known event type ({hint})")
            found |= matched
        return frozenset(found)

    def when(self, spec: Any, at: Parts) -> Predicate:
        try:
            return always if spec is None else compile_condition(spec)
        except ConditionError as exc:
            self.file.add((*at, "when", *exc.parts), exc.message)
            return always

    def seconds(self, text: str, at: Parts) -> int:
        try:
            return parse_duration(text)
        except ValueError:
            self.file.add(at, DURATION_PROBLEM)
            return 1

    def days(self, text: str, at: Parts) -> float:
        return self.seconds(text, at) / SECONDS_PER_DAY
