"""The fast (jsonschema-rs) check agrees with the python-jsonschema problem list: fast says
valid exactly when `all_problems` finds nothing, on every example and on mutated examples; and
`validate_event` returns the same problems as before for invalid events."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, validate_event
from schemas.fast import is_valid_event
from schemas.registry import ENVELOPE_ID, data_schema_id, load_schemas
from schemas.validation import all_problems

TYPES = sorted(EVENT_TYPES)
ENVELOPE = load_schemas()[ENVELOPE_ID]


def data_examples(event_type: str) -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = load_schemas()[data_schema_id(event_type)]["examples"]
    return examples


def envelope(event_type: str, data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "evt-1", "source": "https://www.example.com",
            "type": event_type, "subject": "lead-42", "time": "2025-03-14T09:26:53Z",
            "data": data}


def agree(event: Any) -> None:
    problems = all_problems(event)
    assert is_valid_event(event) == (problems == []), problems
    assert validate_event(event) == problems


def test_every_example_is_valid_for_the_fast_check() -> None:
    for event in ENVELOPE["examples"]:
        assert is_valid_event(event)
    for event_type in TYPES:
        for data in data_examples(event_type):
            assert is_valid_event(envelope(event_type, data)), event_type


def test_invalid_events_are_refused_with_the_python_problem_list() -> None:
    cases: list[Any] = [
        None, [], "event", 3, {},
        {**envelope("web.page_viewed", {"url": "u"}), "time": "2025-02-30T10:00:00Z"},
        {**envelope("web.page_viewed", {"url": "u"}), "subject": "lead\n42"},
        envelope("web.page_scrolled", {"url": "u"}),
        envelope("crm.lead_upserted", {"email": "ada(at)example.com"}),
        envelope("crm.lead_upserted", {"phone": "+4915123456789\n"}),
        envelope("crm.lead_upserted", {"phone": "+49" + "\u0661" * 9}),
        envelope("crm.lead_upserted", {"timezone": "Mars/Olympus_Mons"}),
        envelope("crm.lead_upserted", {"contract_renewal_date": "2026-02-30"}),
        envelope("product.activity", {"action": "login", "count": 1.5}),
    ]
    for event in cases:
        assert not is_valid_event(event), event
        assert validate_event(event) == all_problems(event) != []


INTERESTING: list[Any] = [
    "", "x", " ", "a" * 51, "a" * 101, "a" * 201, "a" * 501, "a" * 1001, "a\x00b", "a\n", "\u00e9",
    "US", "US\n", "us", "EUR", "+14155550123", "+1415555", "+4915123456789\n", "+49\u0661\u0662",
    "ada@example.com", "ada@", "ada@example.c", "Europe/Berlin", "Mars/Olympus", "UTC",
    "2025-01-31", "2025-02-30", "2025-1-31", "2025-03-14T09:26:53Z", "2025-03-14T09:26:53",
    "2025-03-14t09:26:53.5+01:00", "2025-03-14T24:00:00Z", "hard", "email", "sms", "granted",
    "decision", "one_click", "demo_request", "whitepaper", "director", "acme.example", "1.0",
    "application/json", "/crm/x", "http://a b", "%zz", "http://[::1", "web.page_viewed",
    0, 1, -1, 3.0, 1.5, -0.0, 10**15 + 1, 2**63, 10**30, 1e300, True, False, None,
    [], {}, ["kafka"], [""], [1], ["a"] * 51, ["a", "a"], {"email": "granted"},
    {"email": "yes"}, {"fax": "denied"}, {"source": "x"}, {"source": 1}, {"k": "v"}, {"k": 1},
    {"k": [1]}, {"k": None}, {"k": "a" * 5001},
]  # fmt: skip
# JSON numbers only: NaN and Infinity never reach validation (ingest's JSON parser refuses them,
# tests/ingest/unit/test_intake.py), and there the two validators may differ (python-jsonschema
# takes NaN as a number within any bounds, jsonschema-rs does not)
json_floats = st.floats(allow_nan=False, allow_infinity=False)
values = st.sampled_from(INTERESTING) | st.text(max_size=6) | st.integers(-3, 3) | json_floats


def _mutate(draw: st.DrawFn, target: dict[str, Any], keys: list[str]) -> None:
    key = draw(st.sampled_from(keys))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = copy.deepcopy(draw(values))  # INTERESTING holds shared dicts and lists


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    event_type = draw(st.sampled_from(TYPES))
    data = draw(st.sampled_from(data_examples(event_type)))
    event = envelope(event_type, copy.deepcopy(data))
    data_keys = [*load_schemas()[data_schema_id(event_type)]["properties"], "extra_field"]
    envelope_keys = [*ENVELOPE["properties"], "traceid", "Bad", "type", "data"]
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 3)) == 0:
            _mutate(draw, event, envelope_keys)
        elif isinstance(event.get("data"), dict):
            _mutate(draw, event["data"], data_keys)
    return event


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_fast_and_python_validators_agree_on_mutated_examples(event: Any) -> None:
    agree(event)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8))
def test_fast_and_python_validators_agree_on_any_json(event: Any) -> None:
    agree(event)
