"""`when:` conditions: a decision table for every operator, dotted lookups, missing fields and
type mismatches; invalid specs name the path of the problem; compiled predicates never raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.config.conditions import ConditionError, compile_condition
from services.common.config.durations import parse_duration

PROFILE: dict[str, Any] = {
    "seniority": "director",
    "company_size": 250,
    "score": 7.5,
    "title": "Head of Data",
    "email": "ada@Example.com",
    "content_topics": ["kafka", "data-pipelines"],
    "tags": [1, True, None],
    "opted_in": True,
    "nothing": None,
    "attributes.budget": 5000,  # flattened, as the engine merges profiles
    "utm": {"campaign": "spring_launch", "source": "newsletter"},  # nested, as in event data
    "path": "/pricing/enterprise",
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # equals: scalar shorthand and operator; strict about booleans vs numbers
        ({"seniority": "director"}, True),
        ({"seniority": "manager"}, False),
        ({"seniority": {"equals": "director"}}, True),
        ({"company_size": 250}, True),
        ({"company_size": 250.0}, True),
        ({"opted_in": True}, True),
        ({"opted_in": 1}, False),
        ({"company_size": True}, False),
        ({"nothing": None}, True),
        ({"missing": None}, False),
        # not_equals: true for a missing field
        ({"seniority": {"not_equals": "manager"}}, True),
        ({"seniority": {"not_equals": "director"}}, False),
        ({"missing": {"not_equals": "x"}}, True),
        # in: list shorthand and operator; list-valued fields match on any element
        ({"seniority": ["manager", "director"]}, True),
        ({"seniority": {"in": ["vp", "c_level"]}}, False),
        ({"content_topics": {"in": ["kafka", "flink"]}}, True),
        ({"content_topics": {"in": ["flink"]}}, False),
        ({"opted_in": {"in": [1]}}, False),
        ({"opted_in": {"in": [True]}}, True),
        ({"tags": {"in": [True]}}, True),
        ({"utm": {"in": ["spring_launch"]}}, False),  # a mapping is in no set of values
        # not_in
        ({"seniority": {"not_in": ["manager"]}}, True),
        ({"content_topics": {"not_in": ["kafka"]}}, False),
        ({"missing": {"not_in": ["x"]}}, True),
        # matches / not_matches, ignore_case
        ({"path": {"matches": "^/pricing"}}, True),
        ({"path": {"matches": "^/blog"}}, False),
        ({"title": {"matches": "head of"}}, False),
        ({"title": {"matches": "head of", "ignore_case": True}}, True),
        ({"email": {"matches": "@example\\.com$", "ignore_case": True}}, True),
        ({"title": {"not_matches": "student|intern", "ignore_case": True}}, True),
        ({"title": {"not_matches": "Data"}}, False),
        ({"missing": {"not_matches": "x"}}, True),
        ({"company_size": {"matches": "250"}}, False),  # numbers are not text
        # comparisons: numbers only
        ({"company_size": {"gt": 249}}, True),
        ({"company_size": {"gt": 250}}, False),
        ({"company_size": {"gte": 250}}, True),
        ({"company_size": {"lt": 250}}, False),
        ({"company_size": {"lte": 250}}, True),
        ({"company_size": {"gte": 50, "lte": 5000}}, True),
        ({"company_size": {"gte": 500, "lte": 5000}}, False),
        ({"score": {"gt": 7}}, True),
        ({"title": {"gt": 1}}, False),
        ({"opted_in": {"gte": 0}}, False),
        ({"missing": {"lt": 10}}, False),
        # exists
        ({"seniority": {"exists": True}}, True),
        ({"missing": {"exists": True}}, False),
        ({"missing": {"exists": False}}, True),
        ({"nothing": {"exists": True}}, False),
        ({"nothing": {"exists": False}}, True),
        # contains: list element or substring
        ({"content_topics": {"contains": "kafka"}}, True),
        ({"content_topics": {"contains": "kaf"}}, False),
        ({"title": {"contains": "Data"}}, True),
        ({"title": {"contains": "data"}}, False),
        ({"tags": {"contains": 1}}, True),
        ({"tags": {"contains": None}}, True),
        ({"company_size": {"contains": 2}}, False),
        ({"title": {"contains": 1}}, False),
        # dotted names: flattened key first, then nested mappings
        ({"attributes.budget": {"exists": True}}, True),
        ({"attributes.budget": {"gte": 1000}}, True),
        ({"utm.campaign": "spring_launch"}, True),
        ({"utm.medium": {"exists": False}}, True),
        ({"utm.campaign.x": {"exists": True}}, False),
        ({"path.x": {"exists": True}}, False),  # cannot walk into text
        # missing fields fail the positive operators
        ({"missing": "x"}, False),
        ({"missing": ["x"]}, False),
        ({"missing": {"matches": ".*"}}, False),
        ({"missing": {"contains": "x"}}, False),
        # AND of entries; any / all / not
        ({}, True),
        ({"seniority": "director", "company_size": {"gt": 100}}, True),
        ({"seniority": "director", "company_size": {"gt": 1000}}, False),
        ({"any": [{"seniority": "vp"}, {"path": {"matches": "^/pricing"}}]}, True),
        ({"any": [{"seniority": "vp"}, {"path": {"matches": "^/blog"}}]}, False),
        ({"all": [{"seniority": "director"}, {"utm.source": "newsletter"}]}, True),
        ({"all": [{"seniority": "director"}, {"utm.source": "ads"}]}, False),
        ({"not": {"seniority": "vp"}}, True),
        ({"not": {"seniority": "director"}}, False),
        ({"not": {"any": [{"seniority": "vp"}, {"missing": {"exists": True}}]}}, True),
        ({"seniority": "director", "any": [{"x": 1}, {"y": 2}]}, False),
    ],
)
def test_decision_table(spec: dict[str, Any], expected: bool) -> None:
    assert compile_condition(spec)(PROFILE) is expected


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"path": {"matches": "(["}}, "path.matches", "invalid regular expression"),
        ({"path": {"not_matches": ")"}}, "path.not_matches", "invalid regular expression"),
        ({"path": {"maches": "x"}}, "path.maches", "did you mean 'matches'?"),
        ({"path": {"frobnicate": "x"}}, "path.frobnicate", "unknown operator"),
        ({"size": {"gt": "3"}}, "size.gt", "must be a number"),
        ({"size": {"lte": True}}, "size.lte", "must be a number"),
        ({"size": {"exists": "yes"}}, "size.exists", "must be true or false"),
        ({"path": {"matches": "x", "ignore_case": "yes"}}, "path.ignore_case", "true or false"),
        ({"path": {"equals": "x", "ignore_case": True}}, "path.ignore_case", "only applies"),
        ({"path": {"matches": 3}}, "path.matches", "regular expression"),
        ({"path": {}}, "path", "at least one operator"),
        ({"path": {"in": []}}, "path.in", "non-empty list"),
        ({"path": {"in": "x"}}, "path.in", "non-empty list"),
        ({"path": ["a", {"b": 1}]}, "path[1]", "single value"),
        ({"path": {"equals": ["a"]}}, "path.equals", "single value"),
        ({"path": {"contains": {"a": 1}}}, "path.contains", "single value"),
        ({"any": []}, "any", "non-empty list of conditions"),
        ({"all": {"a": 1}}, "all", "non-empty list of conditions"),
        ({"any": [{"a": 1}, "b"]}, "any[1]", "must be a mapping"),
        ({"not": ["a"]}, "not", "must be a mapping"),
        ({"any": [{"a": 1}, {"x": {"matches": "(["}}]}, "any[1].x.matches", "regular"),
        ({"not": {"utm.campaign": {"gt": "x"}}}, "not.utm.campaign.gt", "must be a number"),
        ({"": 1}, "", "non-empty string"),
    ],
)
def test_invalid_spec_names_the_path(spec: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(spec)
    assert caught.value.path == path
    assert message in caught.value.message


def test_condition_error_parts_keep_dotted_field_names_whole() -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition({"any": [{"utm.campaign": {"matches": "(["}}]})
    assert caught.value.parts == ("any", 0, "utm.campaign", "matches")


def test_a_non_mapping_spec_is_rejected() -> None:
    with pytest.raises(ConditionError, match="must be a mapping"):
        compile_condition(["seniority"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "01d", "1.5h", "30 d", "30D", "30", "d", "1y", "30d\n"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="positive whole number and a unit"):
        parse_duration(text)


# -- hypothesis: compiled predicates never raise ---------------------------------------------

FIELDS = ["a", "b", "a.b", "a.b.c", "tags"]
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from([*FIELDS, "c", "x"]), children, max_size=4),
    max_leaves=12,
)
data_strategy = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)

plain_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=5)
numbers = st.integers() | st.floats(allow_nan=False)
operators = st.fixed_dictionaries(
    {},
    optional={
        "equals": plain_scalars, "not_equals": plain_scalars,
        "in": st.lists(plain_scalars, min_size=1, max_size=3),
        "not_in": st.lists(plain_scalars, min_size=1, max_size=3),
        "matches": st.sampled_from(["^a", "b$", "[0-9]+", "x|y"]),
        "not_matches": st.sampled_from(["^a", ".*"]),
        "gt": numbers, "gte": numbers, "lt": numbers, "lte": numbers,
        "exists": st.booleans(), "contains": plain_scalars,
    },
).filter(bool)
matchers = plain_scalars | st.lists(plain_scalars, min_size=1, max_size=3) | operators
conditions = st.recursive(
    st.dictionaries(st.sampled_from(FIELDS), matchers, max_size=3),
    lambda children: st.fixed_dictionaries(
        {}, optional={"any": st.lists(children, min_size=1, max_size=3),
                      "all": st.lists(children, min_size=1, max_size=3), "not": children}),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(spec=conditions, data=data_strategy)
def test_compiled_predicates_never_raise(spec: dict[str, Any], data: dict[str, Any]) -> None:
    result = compile_condition(spec)(data)
    assert isinstance(result, bool)


@settings(max_examples=200, deadline=None)
@given(spec=conditions, data=data_strategy)
def test_not_is_the_negation(spec: dict[str, Any], data: dict[str, Any]) -> None:
    assert compile_condition({"not": spec})(data) is not compile_condition(spec)(data)
