"""`validate_event`: the JSON Schema check ingest runs on every incoming event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from schemas import fast
from schemas.problems import Problem, SortKey, problems_from_errors, sort_key
from schemas.registry import EVENT_TYPES, FAMILIES, data_validator, envelope_validator

MAX_PROBLEMS = 20
_MAX_TYPE_SHOWN = 80


def validate_event(event: object) -> list[Problem]:
    """Validate a CloudEvent (a parsed JSON value) and the `data` of its `type`.

    Returns [] when the event is valid; otherwise every problem found, sorted by path and capped
    at `MAX_PROBLEMS`. `data` is checked whenever `type` is a known type and `data` is an object,
    even if other envelope attributes are invalid, so one round trip reports everything. Never
    raises for JSON input and never touches the network.

    A valid event is recognised by the compiled Rust validators (`schemas.fast`, ~50x faster);
    only an invalid one goes through python-jsonschema, which explains why (`all_problems`).
    """
    if fast.is_valid_event(event):
        return []
    return all_problems(event)


def all_problems(event: object) -> list[Problem]:
    """`validate_event` without the fast path: every problem python-jsonschema finds."""
    errors = envelope_validator().iter_errors(cast(Any, event))
    found = {problem: key for key, problem in problems_from_errors(errors)}
    if isinstance(event, dict):
        found.update((problem, key) for key, problem in _type_problems(event))
    ordered = sorted(found, key=found.__getitem__)
    return ordered[:MAX_PROBLEMS]


def _type_problems(event: dict[str, Any]) -> Iterator[tuple[SortKey, Problem]]:
    event_type, data = event.get("type"), event.get("data")
    if not isinstance(event_type, str) or not event_type:
        return  # the envelope schema reported it
    if event_type not in EVENT_TYPES:
        problem = unknown_type_problem(event_type)
        yield sort_key(["type"], problem.message), problem
    elif isinstance(data, dict):
        errors = data_validator(event_type).iter_errors(data)
        yield from problems_from_errors(errors, prefix=["data"])


def unknown_type_problem(event_type: str) -> Problem:
    """The problem reported for a `type` that has no data schema."""
    shown = event_type if len(event_type) <= _MAX_TYPE_SHOWN else event_type[:_MAX_TYPE_SHOWN] + "…"
    families = ", ".join(f"{family}.*" for family in FAMILIES)
    return Problem("type", f"unknown event type {shown!r}; known families: {families}")


def _warm_up() -> None:
    # Compile every validator when the module is imported: a broken schema stops start-up instead
    # of failing the first request, and no request pays for compilation.
    envelope_validator()
    for event_type in EVENT_TYPES:
        data_validator(event_type)
    fast.warm_up()


_warm_up()
