"""Loading the JSON Schema files and compiling validators for them (offline, once per process)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry, Resource

from schemas.formats import format_checker

BASE_URI = "https://schemas.nurture.dev/events/v1/"
ENVELOPE_ID = f"{BASE_URI}cloudevent.json"

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "web.page_viewed", "web.form_submitted", "web.content_downloaded",
        "web.webinar_registered", "web.webinar_attended",
        "email.delivered", "email.opened", "email.clicked", "email.bounced",
        "email.complained", "email.unsubscribed", "email.replied",
        "sms.delivered", "sms.replied", "sms.opted_out",
        "crm.lead_upserted", "crm.opportunity_opened", "crm.deal_won", "crm.deal_lost",
        "crm.owner_assigned", "crm.task_completed", "crm.leads_merged",
        "identity.linked",
        "product.activity",
        "message.sent", "message.failed", "message.suppressed",
    }
)  # fmt: skip
FAMILIES: tuple[str, ...] = ("web", "email", "sms", "crm", "identity", "product", "message")


def data_schema_id(event_type: str) -> str:
    """The `$id` of the data schema for `event_type`."""
    return f"{BASE_URI}data/{event_type}.json"


def _load(*parts: str) -> dict[str, Any]:
    resource = files("schemas").joinpath(*parts)
    loaded: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return loaded


@cache
def load_schemas() -> Mapping[str, dict[str, Any]]:
    """Every schema document by its `$id`: the envelope, `_common` and one per event type."""
    documents = [_load("cloudevent.schema.json"), _load("data", "_common.schema.json")]
    documents += [_load("data", f"{name}.schema.json") for name in sorted(EVENT_TYPES)]
    return {document["$id"]: document for document in documents}


@cache
def registry() -> Registry[Any]:
    """A referencing registry holding all our schemas; it has no retriever, so never fetches."""
    resources = [(uri, Resource.from_contents(doc)) for uri, doc in load_schemas().items()]
    return Registry().with_resources(resources).crawl()


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """Compile a JSON Schema (ECMA-262) pattern for Python.

    In ECMA-262 (and in pydantic's Rust engine) `$` matches only at the very end; Python's `$`
    also matches before a trailing newline, so "US\\n" would pass "^[A-Z]{2}$". Translate each
    unescaped `$` outside a character class to `\\Z`.
    """
    out: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


def _pattern(
    validator: Validator, pattern: str, instance: object, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"does not match {pattern}")


_Validator: type[Validator] = extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, validators={"pattern": _pattern}
)


def _compile(schema_id: str) -> Validator:
    schema = registry().contents(schema_id)
    return _Validator(schema, registry=registry(), format_checker=format_checker())


@cache
def envelope_validator() -> Validator:
    """The compiled validator for the CloudEvents envelope."""
    return _compile(ENVELOPE_ID)


@cache
def data_validator(event_type: str) -> Validator:
    """The compiled validator for the `data` of a known `event_type` (KeyError if unknown)."""
    if event_type not in EVENT_TYPES:
        raise KeyError(event_type)
    return _compile(data_schema_id(event_type))
