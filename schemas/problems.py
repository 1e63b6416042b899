"""Turning jsonschema errors into short, human `Problem`s with event-relative paths.

jsonschema's own messages repeat the offending instance (sometimes the whole event) and name a
missing property only inside the message; here every problem names the exact field and says what
is expected, without echoing the value back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import ValidationError

from schemas.formats import EXTENSION_NAME, FORMAT_MESSAGES, PATTERN_MESSAGES

ROOT = "$"
"""The path of the event itself (used only when the event is not a JSON object)."""

PathPart = str | int
SortKey = tuple[tuple[tuple[int, int, str], ...], str]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_KEY_SHOWN = 64
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


@dataclass(frozen=True)
class Problem:
    """One reason an event is invalid.

    `path` is dotted and relative to the event, with list indices in brackets
    (`data.consent.email`, `data.content_topics[2]`, `time`); keys that are not plain words are
    quoted (`data.fields["first name"]`). `message` says what is expected, e.g. "is required".
    """

    path: str
    message: str


def format_path(parts: Iterable[PathPart]) -> str:
    """Render path parts as `a.b[0]["odd key"]`; the empty path is `$`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            shown = part if len(part) <= _MAX_KEY_SHOWN else part[:_MAX_KEY_SHOWN] + "…"
            out += f"[{json.dumps(shown)}]"
    return out or ROOT


def sort_key(parts: Sequence[PathPart], message: str) -> SortKey:
    """Order problems by path (list indices numerically), then by message."""
    key = tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in parts)
    return key, message


def problems_from_errors(
    errors: Iterable[ValidationError], prefix: Sequence[PathPart] = ()
) -> Iterator[tuple[SortKey, Problem]]:
    """Translate jsonschema errors into (sort key, Problem) pairs, paths prefixed by `prefix`."""
    for error in errors:
        base = [*prefix, *error.absolute_path]
        for extra, message in _describe(error):
            parts = [*base, *extra]
            yield sort_key(parts, message), Problem(format_path(parts), message)


def _describe(error: ValidationError) -> Iterator[tuple[Sequence[PathPart], str]]:
    """(path below the error's instance, message) for one error; some errors name several fields."""
    if "propertyNames" in error.relative_schema_path:
        yield [str(error.instance)], _bad_name(error)
    elif error.validator == "required":
        yield from _missing(error)
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        for name in _extras(error.instance, error.schema):
            yield [name], "is not allowed"
    else:
        yield [], _message(error)


def _missing(error: ValidationError) -> Iterator[tuple[Sequence[PathPart], str]]:
    # One error per missing property; its name is only in the message, so match it exactly.
    names = error.validator_value if isinstance(error.validator_value, list) else []
    for name in names:
        if error.message == f"{name!r} is a required property":
            yield [name], "is required"


def _extras(instance: dict[Any, Any], schema: Any) -> list[str]:
    known = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return sorted(str(name) for name in instance if name not in known)


def _bad_name(error: ValidationError) -> str:
    if error.validator_value == EXTENSION_NAME:
        return (
            "is not a CloudEvents attribute; extension attribute names must be 1-20 lowercase "
            "letters or digits"
        )
    return f"is not an allowed property name ({_message(error)})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _type_message(expected: Any, instance: object) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    shown = [_TYPE_NAMES.get(name, name) for name in names]
    text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return f"must be {text}" + (", not null" if instance is None else "")


def _one_of(values: Any) -> str:
    shown = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return "must be one of: " + ", ".join(shown)


_MESSAGES: dict[str, Callable[[Any, Any], str]] = {
    "type": _type_message,
    "enum": lambda values, _: _one_of(values),
    "const": lambda value, _: f"must be {json.dumps(value)}",
    "format": lambda name, _: FORMAT_MESSAGES.get(name, f"must be a valid {name}"),
    "pattern": lambda pattern, _: PATTERN_MESSAGES.get(pattern, f"must match {pattern}"),
    "minLength": lambda n, _: "must not be empty" if n == 1 else f"must be at least {n} characters",
    "maxLength": lambda n, _: f"must be at most {_plural(n, 'character')}",
    "minimum": lambda n, _: f"must be at least {n}",
    "maximum": lambda n, _: f"must be at most {n}",
    "exclusiveMinimum": lambda n, _: f"must be greater than {n}",
    "exclusiveMaximum": lambda n, _: f"must be less than {n}",
    "minItems": lambda n, _: f"must have at least {_plural(n, 'item')}",
    "maxItems": lambda n, _: f"must have at most {_plural(n, 'item')}",
    "uniqueItems": lambda _, __: "must not contain duplicates",
    "minProperties": lambda n, _: (
        "must not be empty" if n == 1 else f"must have at least {n} properties"
    ),
    "maxProperties": lambda n, _: f"must have at most {n} properties",
}


def _message(error: ValidationError) -> str:
    if error.validator is None:  # a `false` schema
        return "is not allowed"
    describe = _MESSAGES.get(str(error.validator))
    if describe is None:
        return f"is invalid ({error.validator})"
    return describe(error.validator_value, error.instance)
