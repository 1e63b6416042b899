"""Scoring model files (config as code): YAML files in, frozen `ScoringModel`s out.

`load_models(paths)` reads every file (a directory means its `*.yaml` / `*.yml` files, sorted,
hidden files skipped), validates each against `schemas/config/scoring-model.schema.json`, then
checks what a schema cannot (unique rule ids, event types that exist, valid conditions, ...) and
builds the models. Every problem of every file is collected with file, line, path and reason, and
`ModelFileError` lists them all, so one start-up attempt shows everything to fix.

YAML is read the YAML 1.2 way: only true/false are booleans, so `on:` stays a key and the country
code `NO` stays text; dates stay text.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

import schemas
from schemas import EVENT_TYPES
from schemas.problems import format_path
from services.scoring.domain.conditions import ConditionError, compile_condition
from services.scoring.domain.durations import SECONDS_PER_DAY, parse_duration
from services.scoring.domain.model import (
    Cap,
    EngagementRule,
    FitRule,
    JourneyRule,
    Predicate,
    ScoringModel,
    always,
)

SCHEMA_PATH = Path(schemas.__file__).parent / "config" / "scoring-model.schema.json"
ROOT = "(root)"
"""The path of a problem with the file as a whole."""

Parts = tuple[str | int, ...]
_TAG = "tag:yaml.org,2002:"
_KINDS = {"string": "text", "number": "a number", "integer": "a whole number",
          "boolean": "true/false", "null": "null", "array": "a list", "object": "a mapping"}
_NAME = "must be a lowercase letter and at most {} more lowercase letters, digits, '_' or '-'"
_DURATION = "must be a duration: a positive whole number and a unit m, h, d or w (e.g. 30d)"
_PATTERNS = {"^[a-z][a-z0-9_-]{0,39}$": _NAME.format(39),
             "^[a-z][a-z0-9_-]{0,63}$": _NAME.format(63), "^[1-9][0-9]*(m|h|d|w)$": _DURATION}


@dataclass(frozen=True)
class ConfigProblem:
    """One reason a model file is invalid. `line` is 1-based (None when unknown); `path` is dotted
    inside the file with list indices in brackets (`engagement[2].cap.per`), `(root)` for the
    file as a whole; `message` is short and never repeats the offending value in full."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}"


class ModelFileError(Exception):
    """Scoring model files are invalid; `problems` holds every problem found, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'' if count == 1 else 's'} in scoring model files:"
        super().__init__("\n".join([head, *(f"  {problem}" for problem in self.problems)]))


def load_models(paths: Sequence[str | Path]) -> list[ScoringModel]:
    """Load the scoring models in `paths` (files, or directories of `*.yaml` / `*.yml`).

    Raises ModelFileError listing every problem of every file, including model ids used twice.
    """
    files, problems = _find_files(paths)
    models: list[ScoringModel] = []
    defined: dict[str, str] = {}  # model id -> "file:line" of its first definition
    for path in files:
        source = _Source(str(path))
        model = _load_file(source, path)
        if model is not None and model.id in defined:
            source.add(("id",), f"duplicate model id '{model.id}' (also in {defined[model.id]})")
        elif model is not None:
            defined[model.id] = f"{source.file}:{source.line(('id',))}"
            models.append(model)
        problems += source.sorted_problems()
    if problems:
        raise ModelFileError(problems)
    return models


def _find_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[ConfigProblem]]:
    files: dict[Path, Path] = {}  # resolved -> as given, so a file named twice loads once
    problems = [] if paths else [ConfigProblem("(none)", None, ROOT, "no model files given")]
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.iterdir() if p.suffix in (".yaml", ".yml")
                           and not p.name.startswith(".") and p.is_file())
            missing = "no *.yaml or *.yml files in this directory"
        else:
            found, missing = ([given] if given.exists() else []), "no such file or directory"
        if not found:
            problems.append(ConfigProblem(str(given), None, ROOT, missing))
        for path in found:
            files.setdefault(path.resolve(), path)
    return list(files.values()), problems


@dataclass
class _Source:
    """One file being checked: the line of each path in it and the problems found so far."""

    file: str
    lines: dict[Parts, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    unusable: bool = False  # the YAML cannot be turned into data worth validating

    def line(self, parts: Parts) -> int | None:
        """The line of `parts`, or of its nearest ancestor present in the file."""
        while parts not in self.lines and parts:
            parts = parts[:-1]
        return self.lines.get(parts)

    def add(self, parts: Parts, message: str, line: int | None = None) -> None:
        line = self.line(parts) if line is None else line
        self.problems.append(ConfigProblem(self.file, line, _format_path(parts), message))

    def sorted_problems(self) -> list[ConfigProblem]:
        unique = dict.fromkeys(self.problems)
        return sorted(unique, key=lambda p: (p.line or 0, p.path, p.message))


def _format_path(parts: Parts) -> str:
    return format_path(parts) if parts else ROOT


def _load_file(source: _Source, path: Path) -> ScoringModel | None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        source.add((), f"cannot read the file: {exc.strerror or exc}")
        return None
    data = _parse(source, raw)
    if source.unusable:
        return None
    if data is None:
        source.add((), "is empty: expected a scoring model (id, version, half_life, thresholds)")
        return None
    errors = list(_validator().iter_errors(data))
    for error in errors:
        for extra, message in _describe(error):
            source.add((*error.absolute_path, *extra), message)
    return None if errors else _Builder(source).model(data)


# -- YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # SafeLoader is untyped
    """SafeLoader resolving plain scalars the YAML 1.2 way: only true/false are booleans and
    dates stay text (YAML 1.1 turns `on`, `yes`, `NO` into booleans)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "bool", _TAG + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _parse(source: _Source, raw: bytes) -> Any:
    """The document in `raw`; fills `source.lines` from the node marks (before construction, so
    merge keys are not yet flattened and duplicate keys can be seen)."""
    loader = _Loader(raw)
    try:
        node = loader.get_single_node()
        if node is not None:
            _map_lines(source, node, (), set())
        return None if node is None or source.unusable else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if (
            exc.context and exc.context_mark and exc.problem_mark) else ""
        source.add((), f"invalid YAML: {exc.problem or exc.context}{context}",
                   mark.line + 1 if mark else None)
    except yaml.YAMLError as exc:  # e.g. bytes that are not UTF-8: no mark
        source.add((), f"invalid YAML: {exc}")
    finally:
        loader.dispose()
    source.unusable = True
    return None


def _map_lines(source: _Source, node: Any, parts: Parts, active: set[int]) -> None:
    if id(node) in active:
        source.add(parts, "recursive alias is not allowed")
        source.unusable = True
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if key.tag == _TAG + "merge":
                continue
            if not isinstance(key, yaml.ScalarNode) or key.tag != _TAG + "str":
                shown = key.value if isinstance(key, yaml.ScalarNode) else "here"
                source.add(parts, f"key {shown} must be text (put it in quotes)",
                           key.start_mark.line + 1)
                source.unusable = True
                continue
            if key.value in seen:
                source.add((*parts, key.value), "duplicate key", key.start_mark.line + 1)
            seen.add(key.value)
            source.lines.setdefault((*parts, key.value), key.start_mark.line + 1)
            _map_lines(source, value, (*parts, key.value), active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            source.lines.setdefault((*parts, index), item.start_mark.line + 1)
            _map_lines(source, item, (*parts, index), active)
    elif node.tag == _TAG + "float" and "n" in node.value.lower():  # .inf, .nan
        source.add(parts, "must be a finite number", node.start_mark.line + 1)
    source.lines.setdefault(parts, node.start_mark.line + 1)
    active.discard(id(node))


# -- JSON Schema -----------------------------------------------------------------------------


def _pattern(_: Validator, pattern: str, instance: Any, __: Any) -> Iterator[ValidationError]:
    # JSON Schema's `$` matches only at the very end, Python's also before a final newline; our
    # patterns use `$` only as that anchor
    if isinstance(instance, str) and not re.search(pattern.replace("$", r"\Z"), instance):
        yield ValidationError(f"does not match {pattern}")


@cache
def _validator() -> Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = extend(Draft202012Validator, validators={"pattern": _pattern})  # type: ignore[no-untyped-call]
    return cast(Validator, cls(schema))


def _describe(error: ValidationError) -> Iterator[tuple[Parts, str]]:
    """(path below the error's instance, message) for one error."""
    instance, schema, value = error.instance, error.schema, cast(Any, error.validator_value)
    if "propertyNames" in error.relative_schema_path:
        yield (str(instance),), f"name {_message(error)}"
    elif error.validator == "required" and isinstance(instance, dict):
        for name in value:
            if name not in instance:
                yield (name,), "is required"
    elif error.validator == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {})) if isinstance(schema, dict) else []
        what = "operator" if "equals" in known else "key"
        for name in (str(name) for name in instance if name not in known):
            close = difflib.get_close_matches(name, known, n=1)
            yield (name,), f"unknown {what}" + (f" (did you mean '{close[0]}'?)" if close else "")
    else:
        yield (), _message(error)


def _message(error: ValidationError) -> str:
    value: Any = error.validator_value
    rule = str(error.validator)
    if rule == "type":
        names = [value] if isinstance(value, str) else list(value)
        shown = [_KINDS.get(name, name) for name in names]
        return "must be " + ", ".join(shown[:-1]) + (" or " if len(shown) > 1 else "") + shown[-1]
    if rule == "enum":
        return "must be one of: " + ", ".join(str(choice) for choice in value)
    if rule == "pattern":
        return _PATTERNS.get(value, f"must match {value}")
    if rule in ("minLength", "minItems", "minProperties") and value == 1:
        return "must not be empty"
    if rule == "not" and isinstance(value, dict) and "const" in value:
        return f"must not be {json.dumps(value['const'])}"
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than"}
    if rule in bounds:
        return f"must be {bounds[rule]} {value}"
    return f"is invalid ({rule})"


# -- what a schema cannot check, while building the model ------------------------------------


class _Builder:
    """Builds a `ScoringModel` from schema-valid data, adding a problem for each semantic error."""

    def __init__(self, source: _Source) -> None:
        self.source = source

    def model(self, data: dict[str, Any]) -> ScoringModel | None:
        cap, interests = data.get("engagement_cap", {}), data.get("interests", {})
        journey = data.get("journey", {})
        self.check_rule_ids(data)
        if "max" in cap and "min" in cap and not cap["max"] > cap["min"]:
            self.source.add(("engagement_cap", "max"), f"must be greater than min ({cap['min']})")
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
        return None if self.source.problems else model

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
        for at, rule_id in sorted(rules, key=lambda rule: self.source.line(rule[0]) or 0):
            earlier = first.setdefault(rule_id, at)
            if earlier != at:
                self.source.add((*at, "id"), f"duplicate rule id '{rule_id}' (first used at "
                                f"{_format_path(earlier)}, line {self.source.line(earlier)})")

    def types(self, on: str | list[str], at: Parts) -> frozenset[str]:
        """The event types matching `on` (a type, a glob or a list of them)."""
        found: set[str] = set()
        items = [(at, on)] if isinstance(on, str) else [((*at, i), p) for i, p in enumerate(on)]
        for where, pattern in items:
            matched = {etype for etype in EVENT_TYPES if fnmatch.fnmatchcase(etype, pattern)}
            if not matched:
                close = difflib.get_close_matches(pattern, sorted(EVENT_TYPES), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "see schemas/README.md"
                self.source.add(where, f"matches no known event type ({hint})")
            found |= matched
        return frozenset(found)

    def when(self, spec: Any, at: Parts) -> Predicate:
        try:
            return always if spec is None else compile_condition(spec)
        except ConditionError as exc:
            self.source.add((*at, "when", *exc.parts), exc.message)
            return always

    def seconds(self, text: str, at: Parts) -> int:
        try:
            return parse_duration(text)
        except ValueError:
            self.source.add(at, _DURATION)
            return 1

    def days(self, text: str, at: Parts) -> float:
        return self.seconds(text, at) / SECONDS_PER_DAY
