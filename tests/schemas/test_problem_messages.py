"""validate_event's problems: event-relative paths that name the field, short human messages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Problem, validate_event
from schemas.problems import format_path
from schemas.validation import MAX_PROBLEMS


def event(
    event_type: str = "web.page_viewed", data: Any = None, **attributes: Any
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "https://www.example.com",
        "type": event_type,
        "subject": "lead-42",
        "data": {"url": "https://www.example.com/"} if data is None else data,
    }
    return {**base, **attributes}


def test_valid_event_has_no_problems() -> None:
    assert validate_event(event()) == []


def test_missing_data_field_names_the_field() -> None:
    assert validate_event(event(data={"title": "Pricing"})) == [Problem("data.url", "is required")]


def test_missing_envelope_attributes_are_each_named() -> None:
    assert validate_event({}) == [
        Problem(name, "is required")
        for name in ("data", "id", "source", "specversion", "subject", "type")
    ]


def test_unexpected_property_names_the_property() -> None:
    problems = validate_event(event("email.replied", {"message_id": "m1", "body": "call me"}))
    assert problems == [Problem("data.body", "is not allowed")]


def test_unknown_type_lists_the_families() -> None:
    assert validate_event(event("web.page_scrolled")) == [
        Problem(
            "type",
            "unknown event type 'web.page_scrolled'; known families: "
            "web.*, email.*, sms.*, crm.*, identity.*, product.*, message.*",
        )
    ]


def test_unknown_type_is_shown_truncated() -> None:
    (problem,) = validate_event(event("x" * 120))
    assert "x" * 80 + "…'" in problem.message
    assert "x" * 81 not in problem.message


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        ("email.bounced", {"message_id": "m", "bounce_type": "permanent"},
         Problem("data.bounce_type", "must be one of: hard, soft")),
        ("web.page_viewed", {"url": 42}, Problem("data.url", "must be a string")),
        ("web.page_viewed", {"url": None}, Problem("data.url", "must be a string, not null")),
        ("web.page_viewed", {"url": ""}, Problem("data.url", "must not be empty")),
        ("web.page_viewed", {"url": "u" * 3000},
         Problem("data.url", "must be at most 2048 characters")),
        ("web.page_viewed", {"url": "u", "content_topics": ["a", "b", 3]},
         Problem("data.content_topics[2]", "must be a string")),
        ("crm.lead_upserted", {"consent": {"email": "yes"}},
         Problem("data.consent.email", "must be one of: granted, denied, unknown")),
        ("crm.lead_upserted", {"email": "ada"}, Problem("data.email", "must be an email address")),
        ("crm.lead_upserted", {"phone": "0151 234"},
         Problem("data.phone", "must be an E.164 phone number, e.g. +14155550123")),
        ("crm.lead_upserted", {"country": "DE\n"},
         Problem("data.country", "must be an ISO 3166-1 alpha-2 country code, e.g. DE")),
        ("crm.lead_upserted", {"timezone": "Mars/Base"},
         Problem("data.timezone", "must be an IANA time zone name, e.g. Europe/Berlin")),
        ("crm.lead_upserted", {"contract_renewal_date": "31.01.2026"},
         Problem("data.contract_renewal_date", "must be a date in the form YYYY-MM-DD")),
        ("crm.lead_upserted", {"company_size": 0},
         Problem("data.company_size", "must be at least 1")),
        ("crm.lead_upserted", {}, Problem("data", "must not be empty")),
        ("crm.deal_won", {"opportunity_id": "o", "currency": "euro"},
         Problem("data.currency", "must be an ISO 4217 currency code, e.g. EUR")),
        ("web.form_submitted", {"form_id": "f", "fields": {"first name": 1}},
         Problem('data.fields["first name"]', "must be a string")),
    ],
)  # fmt: skip
def test_messages_are_short_and_name_the_field(
    event_type: str, data: dict[str, Any], expected: Problem
) -> None:
    assert validate_event(event(event_type, data)) == [expected]


def test_time_without_timezone() -> None:
    assert validate_event(event(time="2025-03-14T09:26:53")) == [
        Problem("time", "must be an RFC 3339 date-time with a timezone, e.g. 2025-03-14T09:26:53Z")
    ]


@pytest.mark.parametrize(
    "time", ["2025-03-14T09:26:53Z", "2025-03-14t09:26:53.123456789z", "2025-03-14T10:26:53+01:00"]
)
def test_rfc3339_times_are_accepted(time: str) -> None:
    assert validate_event(event(time=time)) == []


def test_bad_extension_attribute_name_is_named() -> None:
    problems = validate_event(event(TraceId="abc", traceid="ok"))
    assert problems == [
        Problem(
            "TraceId",
            "is not a CloudEvents attribute; extension attribute names must be 1-20 lowercase "
            "letters or digits",
        )
    ]


def test_extension_values_must_be_scalars() -> None:
    assert validate_event(event(traceid=["a"])) == [
        Problem("traceid", "must be a string, a number or a boolean")
    ]


def test_non_object_event() -> None:
    assert validate_event(["not", "an", "event"]) == [Problem("$", "must be an object")]


def test_data_is_checked_even_when_the_envelope_has_problems() -> None:
    problems = validate_event(event(data={}, time="yesterday"))
    assert [p.path for p in problems] == ["data.url", "time"]


def test_messages_do_not_echo_the_value() -> None:
    secret = "ada.lovelace.private@example"
    for problem in validate_event(event("crm.lead_upserted", {"email": secret, "phone": secret})):
        assert secret not in problem.message


def test_problems_are_sorted_by_path_with_numeric_indices_and_capped() -> None:
    problems = validate_event(event(data={"url": "u", "content_topics": [1] * 30}))
    assert [p.path for p in problems] == [f"data.content_topics[{i}]" for i in range(MAX_PROBLEMS)]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), "$"),
        (("time",), "time"),
        (("data", "consent", "email"), "data.consent.email"),
        (("data", "content_topics", 2), "data.content_topics[2]"),
        (("data", "fields", "first name"), 'data.fields["first name"]'),
        (("a.b",), '["a.b"]'),
    ],
)
def test_format_path(parts: tuple[str | int, ...], expected: str) -> None:
    assert format_path(parts) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
known_types = st.sampled_from(["web.page_viewed", "crm.lead_upserted", "message.failed"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), json_values) | st.builds(
    lambda t, data, extra: {**event(t, data), **extra},
    known_types | st.text(),
    st.dictionaries(st.text(), json_values),
    st.dictionaries(st.text(max_size=25), json_values, max_size=3),
))  # fmt: skip
def test_any_json_object_gives_problems_never_an_exception(candidate: dict[str, Any]) -> None:
    problems = validate_event(candidate)
    assert len(problems) <= MAX_PROBLEMS
    assert all(problem.path and problem.message for problem in problems)
