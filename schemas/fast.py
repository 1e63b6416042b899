"""A fast yes/no check of an event (jsonschema-rs), for the happy path of `validate_event`.

The Rust validators are compiled once from the same schema documents, with the same format
functions as the python-jsonschema validators (`format_checker()`'s own checks, so a format has
one answer), offline (a registry of our schemas, nothing fetched). They only say *whether* an
event is valid; the problem list (paths and messages) of an invalid event still comes from the
python-jsonschema validators, so clients see exactly the same errors. ECMA-262 `$` (end of
input only) is what the Rust regex engine does already, so `pattern` agrees with
`registry._ecma_regex`. tests/schemas/test_fast_validation.py checks that both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import jsonschema_rs

from schemas.formats import format_checker
from schemas.registry import ENVELOPE_ID, EVENT_TYPES, data_schema_id, load_schemas


def _formats() -> dict[str, Callable[[str], bool]]:
    """The format functions python-jsonschema uses (they return a bool and never raise)."""
    return {name: func for name, (func, _raises) in format_checker().checkers.items()}


@cache
def _registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry(list(load_schemas().items()))


def _compile(schema_id: str) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(
        load_schemas()[schema_id], registry=_registry(), formats=_formats(),
        validate_formats=True, ignore_unknown_formats=True, base_uri=schema_id)


@cache
def _validators() -> tuple[jsonschema_rs.Draft202012Validator,
                           Mapping[str, jsonschema_rs.Draft202012Validator]]:
    envelope = _compile(ENVELOPE_ID)
    data = {event_type: _compile(data_schema_id(event_type)) for event_type in EVENT_TYPES}
    return envelope, data


def is_valid_event(event: Any) -> bool:
    """True iff `validate_event(event)` would return [] (same rules as `_type_problems`)."""
    envelope, data_validators = _validators()
    try:
        if not envelope.is_valid(event):
            return False
        if not isinstance(event, dict):
            return True
        event_type, data = event.get("type"), event.get("data")
        if not isinstance(event_type, str) or not event_type:
            return True
        validator = data_validators.get(event_type)
        if validator is None:
            return False  # an unknown type is a problem
        return not isinstance(data, dict) or validator.is_valid(data)
    except (ValueError, TypeError, OverflowError):  # a value Rust cannot take: ask the slow path
        return False


def warm_up() -> None:
    """Compile every validator now (a broken schema stops start-up, not the first request)."""
    _validators()
