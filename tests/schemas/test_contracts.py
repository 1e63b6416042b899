"""The JSON Schemas (what upstream teams read) and the pydantic models (what services use) agree.

Every `examples` entry is valid for both, a table of invalid events is rejected by both, a
structural check compares property names / required / extra handling, and a hypothesis test
mutates valid examples and requires both sides to give the same verdict.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError
from referencing.exceptions import Unresolvable

from schemas import DATA_MODELS, EVENT_TYPES, CloudEvent, parse_event, validate_event
from schemas.formats import FORMAT_MESSAGES, PATTERN_MESSAGES
from schemas.registry import (
    ENVELOPE_ID,
    data_schema_id,
    data_validator,
    load_schemas,
    registry,
)

TYPES = sorted(EVENT_TYPES)


def envelope(event_type: str, data: Any, **attributes: Any) -> dict[str, Any]:
    """A valid envelope around `data`; keyword arguments override (or, if None, remove) keys."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "https://www.example.com",
        "type": event_type,
        "subject": "lead-42",
        "time": "2025-03-14T09:26:53Z",
        "data": data,
    }
    event.update(attributes)
    return {key: value for key, value in event.items() if value is not None}


def example(event_type: str) -> dict[str, Any]:
    return copy.deepcopy(data_schema(event_type)["examples"][0])


def data_schema(event_type: str) -> dict[str, Any]:
    return load_schemas()[data_schema_id(event_type)]


def model_accepts(event: Mapping[str, Any]) -> bool:
    try:
        parse_event(event)
    except ValueError:  # includes pydantic.ValidationError
        return False
    return True


def schema_accepts(event: Mapping[str, Any]) -> bool:
    return validate_event(event) == []


def walk(node: Any) -> list[dict[str, Any]]:
    """Every JSON object in a schema document."""
    if isinstance(node, dict):
        return [node] + [sub for value in node.values() for sub in walk(value)]
    if isinstance(node, list):
        return [sub for value in node for sub in walk(value)]
    return []


# -- the schema files themselves ------------------------------------------------------------


def test_every_event_type_has_a_schema_file_and_a_model() -> None:
    assert set(DATA_MODELS) == EVENT_TYPES
    assert len(EVENT_TYPES) == 27
    assert {uri for uri in load_schemas() if "/data/" in uri and "_common" not in uri} == {
        data_schema_id(t) for t in EVENT_TYPES
    }


@pytest.mark.parametrize("schema_id", sorted(load_schemas()))
def test_schema_is_valid_draft_2020_12(schema_id: str) -> None:
    Draft202012Validator.check_schema(load_schemas()[schema_id])


@pytest.mark.parametrize("event_type", TYPES)
def test_data_schema_is_documented(event_type: str) -> None:
    schema = data_schema(event_type)
    assert schema["title"] == event_type
    assert schema["description"]
    assert schema["examples"]
    assert schema["$id"] == f"https://schemas.nurture.dev/events/v1/data/{event_type}.json"
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{event_type}.{name} has no description"


def test_envelope_attributes_have_descriptions_and_examples() -> None:
    schema = load_schemas()[ENVELOPE_ID]
    for name, prop in schema["properties"].items():
        assert prop.get("description") and prop.get("examples"), name
    assert schema["examples"]


def test_every_pattern_and_format_used_has_a_readable_message_and_a_check() -> None:
    nodes = [node for doc in load_schemas().values() for node in walk(doc)]
    patterns = {node["pattern"] for node in nodes if isinstance(node.get("pattern"), str)}
    formats = {node["format"] for node in nodes if isinstance(node.get("format"), str)}
    assert patterns <= set(PATTERN_MESSAGES)
    assert formats <= set(FORMAT_MESSAGES)  # FORMAT_MESSAGES keys are exactly the checked ones


def test_refs_resolve_offline_only() -> None:
    resolver = registry().resolver()
    assert resolver.lookup(data_schema_id("web.page_viewed")).contents["title"]
    with pytest.raises(Unresolvable):
        resolver.lookup("https://schemas.nurture.dev/events/v1/data/nope.json")


def test_validators_are_compiled_once() -> None:
    assert data_validator("web.page_viewed") is data_validator("web.page_viewed")


# -- examples valid for both ----------------------------------------------------------------


def test_envelope_examples_are_valid_for_both() -> None:
    for event in load_schemas()[ENVELOPE_ID]["examples"]:
        assert validate_event(event) == []
        parsed, data = parse_event(event)
        assert parsed.extensions == {"traceparent": event["traceparent"]}
        assert parsed.time == datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
        assert type(data).__name__ == "PageViewed"


def test_readme_example_is_valid_for_both() -> None:
    readme = (Path(__file__).parents[2] / "schemas" / "README.md").read_text(encoding="utf-8")
    body = readme.split("-d '", 1)[1].split("'\n```", 1)[0]
    event = json.loads(body)
    assert validate_event(event) == []
    assert model_accepts(event)


@pytest.mark.parametrize("event_type", TYPES)
def test_every_example_is_valid_for_both(event_type: str) -> None:
    for data in data_schema(event_type)["examples"]:
        event = envelope(event_type, data)
        assert validate_event(event) == []
        parsed, model = parse_event(event)
        assert isinstance(model, DATA_MODELS[event_type])
        assert parsed.subject == "lead-42"


@pytest.mark.parametrize("event_type", TYPES)
def test_model_fields_match_schema_properties(event_type: str) -> None:
    schema, model = data_schema(event_type), DATA_MODELS[event_type]
    assert set(model.model_fields) == set(schema["properties"])
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required == set(schema.get("required", []))
    allows_extra = model.model_config.get("extra") == "allow"
    assert allows_extra is schema["additionalProperties"]


# -- invalid events rejected by both ----------------------------------------------------------


def with_data(event_type: str, **changes: Any) -> dict[str, Any]:
    """The type's example with `changes` applied (a value of ... removes the key)."""
    data = example(event_type)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return envelope(event_type, data)


INVALID: dict[str, dict[str, Any]] = {
    # envelope
    "time without timezone": envelope("web.page_viewed", {"url": "u"}, time="2025-03-14T09:26:53"),
    "time not a date": envelope("web.page_viewed", {"url": "u"}, time="2025-02-30T10:00:00Z"),
    "time without seconds": envelope("web.page_viewed", {"url": "u"}, time="2025-03-14T09:26Z"),
    "specversion 0.3": envelope("web.page_viewed", {"url": "u"}, specversion="0.3"),
    "subject missing": envelope("web.page_viewed", {"url": "u"}, subject=None),
    "subject with newline": envelope("web.page_viewed", {"url": "u"}, subject="lead\n42"),
    "extension name upper case": envelope("web.page_viewed", {"url": "u"}, TraceId="abc"),
    "extension name underscore": envelope("web.page_viewed", {"url": "u"}, trace_id="abc"),
    "extension name too long": envelope("web.page_viewed", {"url": "u"}, **{"a" * 21: "x"}),
    "extension value object": envelope("web.page_viewed", {"url": "u"}, traceid={"a": 1}),
    "datacontenttype xml": envelope("web.page_viewed", {"url": "u"}, datacontenttype="text/xml"),
    "source with spaces": envelope("web.page_viewed", {"url": "u"}, source="my website"),
    "data not an object": envelope("web.page_viewed", ["u"]),
    "unknown type": envelope("web.page_scrolled", {"url": "u"}),
    # web.*
    "page_viewed without url": with_data("web.page_viewed", url=...),
    "page_viewed bad stage": with_data("web.page_viewed", content_stage="purchase"),
    "page_viewed empty topic": with_data("web.page_viewed", content_topics=["kafka", ""]),
    "page_viewed null title": with_data("web.page_viewed", title=None),
    "form bad form_type": with_data("web.form_submitted", form_type="survey"),
    "form non-string field": with_data("web.form_submitted", fields={"team_size": 50}),
    "download bad content_type": with_data("web.content_downloaded", content_type="video"),
    "webinar negative seconds": with_data("web.webinar_attended", attended_seconds=-1),
    "webinar seconds as string": with_data("web.webinar_attended", attended_seconds="60"),
    # email.*
    "clicked without url": with_data("email.clicked", url=...),
    "bounced bad bounce_type": with_data("email.bounced", bounce_type="permanent"),
    "bounced without bounce_type": with_data("email.bounced", bounce_type=...),
    "unsubscribed bad method": with_data("email.unsubscribed", method="email"),
    "replied with body": with_data("email.replied", body="Thanks, call me"),
    "delivered without message_id": with_data("email.delivered", message_id=...),
    # sms.*
    "sms replied with body": with_data("sms.replied", body="YES please call"),
    "sms opted_out empty keyword": with_data("sms.opted_out", keyword=""),
    "sms delivered without message_id": with_data("sms.delivered", message_id=...),
    # crm.*
    "lead empty": envelope("crm.lead_upserted", {}),
    "lead bad email": with_data("crm.lead_upserted", email="ada(at)example.com"),
    "lead phone not E.164": with_data("crm.lead_upserted", phone="0151 2345678"),
    "lead phone trailing newline": with_data("crm.lead_upserted", phone="+4915123456789\n"),
    "lead phone arabic digits": with_data("crm.lead_upserted", phone="+49" + "\u0661" * 9),
    "lead country lower case": with_data("crm.lead_upserted", country="de"),
    "lead country trailing newline": with_data("crm.lead_upserted", country="DE\n"),
    "lead unknown timezone": with_data("crm.lead_upserted", timezone="Mars/Olympus_Mons"),
    "lead consent bad status": with_data("crm.lead_upserted", consent={"email": "yes"}),
    "lead consent unknown channel": with_data("crm.lead_upserted", consent={"fax": "granted"}),
    "lead company_size zero": with_data("crm.lead_upserted", company_size=0),
    "lead company_size string": with_data("crm.lead_upserted", company_size="250"),
    "lead renewal not a date": with_data("crm.lead_upserted", contract_renewal_date="2026-02-30"),
    "lead unknown field": with_data("crm.lead_upserted", firstname="Ada"),
    "lead nested attribute": with_data("crm.lead_upserted", attributes={"tags": ["a"]}),
    "opportunity bad currency": with_data("crm.opportunity_opened", currency="eur"),
    "opportunity negative amount": with_data("crm.opportunity_opened", amount=-1),
    "deal_lost without opportunity": with_data("crm.deal_lost", opportunity_id=...),
    "owner_assigned without owner": with_data("crm.owner_assigned", owner_id=...),
    "task_completed empty task_id": with_data("crm.task_completed", task_id=""),
    # product.*
    "activity without action": with_data("product.activity", action=...),
    "activity count zero": with_data("product.activity", count=0),
    "activity fractional count": with_data("product.activity", count=1.5),
    "activity unknown field": with_data("product.activity", plan="pro"),
    # message.*
    "sent without channel": with_data("message.sent", channel=...),
    "sent bad channel": with_data("message.sent", channel="push"),
    "failed without reason": with_data("message.failed", reason=...),
    "failed retryable string": with_data("message.failed", retryable="yes"),
    "suppressed empty reason": with_data("message.suppressed", reason=""),
    "suppressed attempt zero": with_data("message.suppressed", attempt=0),
}


@pytest.mark.parametrize("event", INVALID.values(), ids=INVALID.keys())
def test_invalid_events_are_rejected_by_both(event: dict[str, Any]) -> None:
    problems = validate_event(event)
    assert problems
    assert all(problem.path and problem.message for problem in problems)
    assert not model_accepts(event)


def test_integral_floats_are_integers_for_both() -> None:
    event = with_data("product.activity", count=3.0)
    assert schema_accepts(event)
    _, data = parse_event(event)
    assert data.model_dump()["count"] == 3


def test_parse_event_returns_typed_data() -> None:
    event, data = parse_event(envelope("crm.lead_upserted", example("crm.lead_upserted")))
    assert isinstance(event, CloudEvent)
    dumped = data.model_dump()
    assert dumped["contract_renewal_date"].isoformat() == "2026-01-31"
    assert dumped["consent"] == {"email": "granted", "sms": "denied", "phone": "unknown"}


def test_parse_event_rejects_unknown_type_with_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'web\.page_scrolled'"):
        parse_event(envelope("web.page_scrolled", {}))


def test_open_models_keep_extra_properties() -> None:
    # (`search` was the example until it became a field of its own, derived from the url)
    _, data = parse_event(envelope("web.page_viewed", {"url": "u", "hash": "#pricing"}))
    assert data.model_extra == {"hash": "#pricing"}


# -- differential: mutated examples get the same verdict ------------------------------------

INTERESTING: list[Any] = [
    "", "x", "a" * 51, "a" * 101, "a" * 201, "a" * 501, "a" * 1001, "a\x00b", "a\n",
    "US", "us", "EUR", "+14155550123", "+1415555", "ada@example.com", "ada@", "Europe/Berlin",
    "Mars/Olympus", "2025-01-31", "2025-02-30", "2025-03-14T09:26:53Z", "2025-03-14T09:26:53",
    "hard", "email", "sms", "granted", "decision", "one_click", "demo_request", "whitepaper",
    "director", "acme.example", "1.0", "application/json", "/crm/x", "web.page_viewed",
    0, 1, -1, 3.0, 1.5, 10**15 + 1, True, False, None, [], {}, ["kafka"], [""], [1], ["a"] * 51,
    {"email": "granted"}, {"email": "yes"}, {"fax": "denied"}, {"source": "x"}, {"source": 1},
    {"k": "v"}, {"k": 1}, {"k": [1]}, {"k": None}, {"k": "a" * 5001},
]  # fmt: skip
values = st.sampled_from(INTERESTING) | st.text(max_size=5) | st.integers(-3, 3)


def _mutate(draw: st.DrawFn, target: dict[str, Any], keys: list[str]) -> None:
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(values)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(TYPES))
    data = draw(st.sampled_from(data_schema(event_type)["examples"]))
    event = envelope(event_type, copy.deepcopy(data))
    data_keys = [*data_schema(event_type)["properties"], "extra_field"]
    envelope_keys = [*load_schemas()[ENVELOPE_ID]["properties"], "traceid", "Bad", "type"]
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            _mutate(draw, event, envelope_keys)
        elif isinstance(event.get("data"), dict):
            _mutate(draw, event["data"], data_keys)
    return event


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_schema_and_models_agree_on_mutated_examples(event: dict[str, Any]) -> None:
    assert schema_accepts(event) == model_accepts(event), validate_event(event)


def test_every_model_is_frozen() -> None:
    models: list[type[BaseModel]] = [CloudEvent, *DATA_MODELS.values()]
    for model in models:
        assert model.model_config.get("frozen") is True, model.__name__
    _, data = parse_event(envelope("email.clicked", example("email.clicked")))
    with pytest.raises(ValidationError):
        data.url = "https://elsewhere.example"  # type: ignore[attr-defined]
