"""Checking config data against a JSON Schema file, with short messages that name the path.

jsonschema's own messages repeat the offending value (sometimes the whole file); here each problem
is `(path, message)` with the path as keys and list indices and a message that says what is
expected: "is required", "unknown key (did you mean 'points'?)", "must be a whole number".
Used by `services.common.config.files`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

Parts = tuple[str | int, ...]
"""A path inside a file as keys and list indices: `("engagement", 2, "cap", "per")`."""

_KINDS = {"string": "text", "number": "a number", "integer": "a whole number",
          "boolean": "true/false", "null": "null", "array": "a list", "object": "a mapping"}


def schema_problems(
    data: Any, schema: Path, pattern_messages: Mapping[str, str]
) -> list[tuple[Parts, str]]:
    """(path, message) for every way `data` breaks the JSON Schema (draft 2020-12) in the file
    `schema`; [] when it is valid. `pattern_messages` maps a `pattern` to the message for a
    value not matching it (default: "must match <pattern>")."""
    return [((*error.absolute_path, *extra), message)
            for error in _validator(schema).iter_errors(data)
            for extra, message in _describe(error, pattern_messages)]


def required_keys(schema: Path) -> list[str]:
    """The keys the schema in the file `schema` requires at the top level."""
    return [str(key) for key in _schema(schema).get("required", [])]


def _pattern(_: Validator, pattern: str, instance: Any, __: Any) -> Iterator[ValidationError]:
    # JSON Schema's `$` matches only at the very end, Python's also before a final newline; our
    # patterns use `$` only as that anchor
    if isinstance(instance, str) and not re.search(pattern.replace("$", r"\Z"), instance):
        yield ValidationError(f"does not match {pattern}")


@cache
def _schema(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))


@cache
def _validator(path: Path) -> Validator:
    cls = extend(Draft202012Validator, validators={"pattern": _pattern})  # type: ignore[no-untyped-call]
    return cast(Validator, cls(_schema(path)))


def _describe(error: ValidationError, messages: Mapping[str, str]) -> Iterator[tuple[Parts, str]]:
    """(path below the error's instance, message) for one error."""
    instance, schema, value = error.instance, error.schema, cast(Any, error.validator_value)
    if "propertyNames" in error.relative_schema_path:
        yield (str(instance),), f"name {_message(error, messages)}"
    elif error.validator == "required" and isinstance(instance, dict):
        for name in value:
            if name not in instance:
                yield (name,), "is required"
    elif error.validator == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {})) if isinstance(schema, dict) else []
        what = "operator" if "equals" in known else "key"  # the operators of a condition
        for name in (str(name) for name in instance if name not in known):
            close = difflib.get_close_matches(name, known, n=1)
            yield (name,), f"unknown {what}" + (f" (did you mean '{close[0]}'?)" if close else "")
    else:
        yield (), _message(error, messages)


def _message(error: ValidationError, messages: Mapping[str, str]) -> str:
    value: Any = error.validator_value
    rule = str(error.validator)
    if rule == "type":
        names = [value] if isinstance(value, str) else list(value)
        shown = [_KINDS.get(name, name) for name in names]
        return "must be " + ", ".join(shown[:-1]) + (" or " if len(shown) > 1 else "") + shown[-1]
    if rule == "enum":
        return "must be one of: " + ", ".join(str(choice) for choice in value)
    if rule == "pattern":
        return messages.get(value, f"must match {value}")
    if rule in ("minLength", "minItems", "minProperties") and value == 1:
        return "must not be empty"
    if rule == "not" and isinstance(value, dict) and "const" in value:
        return f"must not be {json.dumps(value['const'])}"
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than"}
    if rule in bounds:
        return f"must be {bounds[rule]} {value}"
    return f"is invalid ({rule})"
