"""Scoring model files: the shipped models load; broken files are refused with file, line, path
and reason for every problem; random input never raises anything but ModelFileError."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from services.scoring.adapters.model_files import (
    SCHEMA_PATH,
    ConfigProblem,
    ModelFileError,
    load_models,
)
from services.scoring.domain.engine import apply
from services.scoring.domain.model import JOURNEY_STAGES, Cap, ScoringModel
from services.scoring.domain.state import LeadState
from tests import config_fuzz as fuzz

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "config" / "scoring"
DAY = 86400

VALID = """\
id: demo
version: 1
half_life: 30d
thresholds: {mql: 50}
engagement:
  - id: pricing
    on: [web.page_viewed]
    points: 20
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(paths: list[Path]) -> list[ConfigProblem]:
    with pytest.raises(ModelFileError) as caught:
        load_models(paths)
    return caught.value.problems


# -- the shipped models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> dict[str, ScoringModel]:
    return {model.id: model for model in load_models([SHIPPED])}


def test_shipped_models_load_in_file_order(shipped: dict[str, ScoringModel]) -> None:
    assert list(shipped) == ["b2b", "product-led"]


def test_b2b_model(shipped: dict[str, ScoringModel]) -> None:
    b2b = shipped["b2b"]
    assert b2b.thresholds == {"mql": 50.0, "sql": 100.0}
    assert (b2b.half_life_days, b2b.late_tolerance_days, b2b.journey_window_days) == (30, 7, 90)
    assert (b2b.engagement_max, b2b.engagement_min) == (200, -100)
    assert {r.id: r.points for r in b2b.fit} == {
        "senior": 10, "target-industry": 10, "company-size": 10, "target-country": 5,
        "has-budget": 5, "student": -20, "free-mail": -10, "competitor": -50}
    rules = {r.id: r for r in b2b.engagement}
    assert {i: r.points for i, r in rules.items()} == {
        "content-download": 10, "webinar-registered": 5, "webinar-attended": 15,
        "pricing-page": 20, "demo-request": 50, "page-view": 1, "email-opened": 1,
        "email-clicked": 3, "careers-page": -10, "unsubscribed": -20, "hard-bounce": -25,
        "spam-complaint": -50}
    assert rules["pricing-page"].cap == Cap(20, DAY)
    assert (rules["page-view"].cap, rules["email-opened"].cap) == (Cap(10, DAY), Cap(3, DAY))
    assert rules["email-clicked"].cap == Cap(9, DAY)
    assert rules["hard-bounce"].when({"bounce_type": "hard"})
    assert not rules["hard-bounce"].when({"bounce_type": "soft"})
    assert b2b.interest_on == {"web.page_viewed", "web.content_downloaded",
                               "web.webinar_registered", "web.webinar_attended"}
    assert {rule.stage for rule in b2b.journey} == set(JOURNEY_STAGES)


@pytest.mark.parametrize(("profile", "matching"), [
    ({"seniority": "vp", "industry": "Financial Services", "company_size": 300, "country": "NO",
      "attributes.budget": 10000, "email": "ada@acme.example"},
     {"senior", "target-industry", "company-size", "target-country", "has-budget"}),
    ({"seniority": "intern", "title": "Marketing Intern", "email": "bob@GMail.com",
      "company_size": 20, "country": "BR"}, {"student", "free-mail"}),
    ({"company_domain": "rival.example", "industry": "Manufacturing"}, {"competitor"}),
    ({}, set()),
])
def test_b2b_fit_rules_on_profiles(shipped: dict[str, ScoringModel], profile: dict[str, Any],
                                   matching: set[str]) -> None:
    assert {rule.id for rule in shipped["b2b"].fit if rule.when(profile)} == matching


@pytest.mark.parametrize(("etype", "data", "points"), [
    ("web.page_viewed", {"url": "u", "path": "/pricing/teams"}, 21),
    ("web.page_viewed", {"url": "u", "path": "/careers/sre"}, -9),
    ("web.form_submitted", {"form_id": "f", "form_type": "demo_request"}, 50),
    ("email.bounced", {"message_id": "m", "bounce_type": "hard"}, -25),
    ("email.complained", {"message_id": "m"}, -50),
])
def test_b2b_engagement_through_the_engine(shipped: dict[str, ScoringModel], etype: str,
                                           data: dict[str, Any], points: float) -> None:
    event = {"id": "e1", "source": "test", "type": etype, "subject": "lead", "data": data}
    snap = apply(LeadState(), event, lead_id="lead", event_time=1.79e9, models=[shipped["b2b"]])
    assert snap.models[0].engagement == pytest.approx(points)


def test_product_led_model(shipped: dict[str, ScoringModel]) -> None:
    model = shipped["product-led"]
    assert model.thresholds == {"pql": 40.0, "hot": 80.0}
    assert model.half_life_days == 14
    assert "product.activity" in model.rules_by_type
    signup = {r.id: r for r in model.engagement}["trial-signup"]
    assert signup.when({"form_type": "trial_signup"})
    assert {r.id for r in model.engagement if r.when({"action": "pipeline_created"})
            and "product.activity" in r.on} == {"pipeline-created", "daily-use"}


# -- the schema ------------------------------------------------------------------------------


def test_schema_is_valid_and_its_example_loads(tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["journey_rule"]["properties"]["stage"]["enum"] == list(JOURNEY_STAGES)
    (model,) = load_models([write(tmp_path, "example.yaml", yaml.safe_dump(schema["examples"][0]))])
    assert model.id == "b2b"


# -- broken files ----------------------------------------------------------------------------

BROKEN = [
    pytest.param("id: demo\nversion: 1\n  half_life: 30d\n",
                 [(3, "(root)", "invalid YAML: mapping values are not allowed here")], id="syntax"),
    pytest.param("id: demo\nthresholds: {mql: 50\nversion: 1\n",
                 [(3, "(root)", "invalid YAML")], id="unclosed-flow-mapping"),
    pytest.param(VALID.replace("    points: 20", "    point: 20"),
                 [(6, "engagement[0].points", "is required"),
                  (8, "engagement[0].point", "unknown key (did you mean 'points'?)")],
                 id="unknown-key-with-suggestion"),
    pytest.param(VALID.replace("thresholds: {mql: 50}\n", ""),
                 [(1, "thresholds", "is required")], id="missing-required-top-level"),
    pytest.param(VALID.replace("30d", "30 days"),
                 [(3, "half_life", "must be a duration")], id="bad-duration"),
    pytest.param(VALID + "    cap: {points: 5, per: 1y}\n",
                 [(9, "engagement[0].cap.per", "must be a duration")], id="bad-cap-window"),
    pytest.param(VALID.replace("[web.page_viewed]", "[web.page_viewed, web.page_view]"),
                 [(7, "engagement[0].on[1]",
                   "matches no known event type (did you mean 'web.page_viewed'?)")],
                 id="unknown-event-type"),
    pytest.param(VALID.replace("[web.page_viewed]", "'shop.*'"),
                 [(7, "engagement[0].on", "matches no known event type")], id="glob-matches-none"),
    pytest.param(VALID + "  - id: pricing\n    on: email.*\n    points: 1\n",
                 [(9, "engagement[1].id", "duplicate rule id 'pricing' (first used at "
                                          "engagement[0], line 6)")], id="duplicate-rule-id"),
    pytest.param(VALID + "fit:\n  - {id: pricing, points: 5}\n",
                 [(10, "fit[0].id", "duplicate rule id")], id="rule-id-shared-by-fit"),
    pytest.param(VALID + "    when:\n      path: {matches: '^/(pricing'}\n",
                 [(10, "engagement[0].when.path.matches", "invalid regular expression")],
                 id="bad-regex"),
    pytest.param(VALID + "    when: {any: [{path: /a}, {utm.campaign: {matches: '['}}]}\n",
                 [(9, 'engagement[0].when.any[1]["utm.campaign"].matches', "invalid regular")],
                 id="bad-regex-nested"),
    pytest.param(VALID + "    when: {path: {maches: '^/pricing'}}\n",
                 [(9, "engagement[0].when.path.maches", "unknown operator (did you mean "
                                                        "'matches'?)")], id="unknown-operator"),
    pytest.param(VALID + "    when: {company_size: {gt: '50'}}\n",
                 [(9, "engagement[0].when.company_size.gt", "must be a number")],
                 id="comparison-with-text"),
    pytest.param(VALID.replace("points: 20", "points: 0"),
                 [(8, "engagement[0].points", "must not be 0")], id="zero-points"),
    pytest.param(VALID.replace("points: 20", "points: .nan"),
                 [(8, "engagement[0].points", "must be a finite number")], id="nan-points"),
    pytest.param(VALID.replace("{mql: 50}", "{MQL: 50}"),
                 [(4, 'thresholds.MQL', "name must be a lowercase letter")], id="threshold-name"),
    pytest.param(VALID + "engagement_cap: {max: 10, min: 10}\n",
                 [(9, "engagement_cap.max", "must be greater than min")], id="cap-max-not-above"),
    pytest.param(VALID + "journey:\n  rules:\n    - {stage: buying, on: web.page_viewed}\n",
                 [(11, "journey.rules[0].stage", "must be one of: awareness, consideration, "
                                                 "decision")], id="journey-stage"),
    pytest.param(VALID.replace("id: demo", 'id: "demo\\n"'),
                 [(1, "id", "must be a lowercase letter")], id="trailing-newline-in-id"),
    pytest.param(VALID.replace("version: 1", "version: one"),
                 [(2, "version", "must be a whole number")], id="version-type"),
    pytest.param(VALID + "id: other\n", [(9, "id", "duplicate key")], id="duplicate-yaml-key"),
    pytest.param(VALID + "1: x\n", [(9, "(root)", "key 1 must be text")], id="non-text-key"),
    pytest.param("- id: demo\n- version: 1\n", [(1, "(root)", "must be a mapping")],
                 id="top-level-list"),
    pytest.param("just text\n", [(1, "(root)", "must be a mapping")], id="top-level-scalar"),
    pytest.param("", [(None, "(root)", "is empty")], id="empty-file"),
    pytest.param("# only a comment\n", [(None, "(root)", "is empty")], id="only-comments"),
    pytest.param("a: &x [*x]\n", [(1, "a[0]", "recursive alias")], id="recursive-alias"),
    pytest.param("id: x\n---\nid: y\n", [(2, "(root)", "expected a single document")],
                 id="two-documents"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_files(tmp_path: Path, text: str,
                      expected: list[tuple[int | None, str, str]]) -> None:
    path = write(tmp_path, "model.yaml", text)
    found = problems([path])
    assert [(p.file, p.line, p.path) for p in found] == [(str(path), ln, at)
                                                         for ln, at, _ in expected]
    for problem, (_, _, message) in zip(found, expected, strict=True):
        assert message in problem.message


def test_an_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    """Nine levels of ten aliases stand for 10**9 values in 500 bytes ("billion laughs"): the
    loader counts values as it goes and stops, instead of expanding (or validating) them."""
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 10)]
    path = write(tmp_path, "model.yaml", "\n".join(levels) + "\n")
    (found,) = problems([path])
    assert found.message == "too many values (more than 100,000, aliases expanded)"
    assert found.line is not None and found.path.startswith("l")


def test_yaml_1_1_booleans_stay_text(tmp_path: Path) -> None:
    (model,) = load_models([write(tmp_path, "m.yaml", VALID + "fit:\n"
                                  "  - {id: norway, points: 1, when: {country: [NO, SE]}}\n"
                                  "  - {id: flag, points: 1, when: {opted: yes}}\n")])
    assert model.engagement[0].on == {"web.page_viewed"}  # `on:` is a key, not True
    assert model.fit[0].when({"country": "NO"})
    assert model.fit[1].when({"opted": "yes"}) and not model.fit[1].when({"opted": True})


def test_anchors_and_merge_keys_share_settings(tmp_path: Path) -> None:
    (model,) = load_models([write(tmp_path, "m.yaml", VALID + (
        "    when: &pricing {path: {matches: '^/pricing'}}\n"
        "    cap: &daily {points: 20, per: 1d}\n"
        "  - {id: pricing-email, on: email.clicked, points: 5, when: *pricing, cap: *daily}\n"
        "  - <<: {on: email.opened, points: 1}\n"
        "    id: opened\n"))])
    rules = {rule.id: rule for rule in model.engagement}
    assert rules["pricing-email"].when({"path": "/pricing"}) and rules["pricing-email"].cap
    assert rules["opened"].on == {"email.opened"} and rules["opened"].points == 1


def test_defaults(tmp_path: Path) -> None:
    (model,) = load_models([write(tmp_path, "m.yaml", VALID + "interests: {on: 'email.*'}\n")])
    assert (model.late_tolerance_days, model.journey_window_days) == (7.0, 90.0)
    assert model.interest_fields == ("content_topics",)
    assert "email.opened" in model.interest_on and "web.page_viewed" not in model.interest_on
    assert (model.engagement_max, model.engagement_min) == (None, None)


def test_problems_of_all_files_are_collected_and_rendered(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID.replace("30d", "30x"))
    second = write(tmp_path, "b.yml", VALID.replace("points: 20", "point: 20"))
    with pytest.raises(ModelFileError) as caught:
        load_models([tmp_path])
    text = str(caught.value)
    assert text.splitlines()[0] == "3 problems in scoring model files:"
    assert f"{first}:3: half_life: must be a duration" in text
    assert f"{second}:8: engagement[0].point: unknown key (did you mean 'points'?)" in text
    assert len(caught.value.problems) == 3


def test_duplicate_model_id_across_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", VALID.replace("version: 1", "version: 2"))
    (problem,) = problems([first, second])
    assert (problem.file, problem.line, problem.path) == (str(second), 1, "id")
    assert problem.message == f"duplicate model id 'demo' (also in {first}:1)"


def test_a_file_named_twice_loads_once(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID)
    assert [m.id for m in load_models([tmp_path, path])] == ["demo"]


def test_directory_reads_yaml_and_yml_sorted_and_skips_others(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", VALID.replace("demo", "second"))
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "notes.txt", "not a model")
    write(tmp_path, ".draft.yaml", "broken: [")
    assert [m.id for m in load_models([tmp_path])] == ["demo", "second"]


@pytest.mark.parametrize(("name", "message"), [
    ("empty-dir", "no *.yaml or *.yml files in this directory"),
    ("missing.yaml", "no such file or directory"),
])
def test_paths_without_models(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    if name == "empty-dir":
        path.mkdir()
    (problem,) = problems([path])
    assert (problem.file, problem.line, problem.path, problem.message) == (
        str(path), None, "(root)", message)
    assert str(problem) == f"{path}: (root): {message}"


def test_no_paths_at_all() -> None:
    (problem,) = problems([])
    assert "no model files given" in problem.message


# -- hypothesis: nothing but ModelFileError --------------------------------------------------

KEYS = ["id", "version", "half_life", "thresholds", "fit", "engagement", "on", "points", "when",
        "cap", "per", "any", "not", "matches", "in", "gt", "exists", "interests", "journey",
        "rules", "stage", "engagement_cap", "max", "min", "path", "mql"]
json_values = fuzz.json_values(
    KEYS, ["30d", "web.page_viewed", "email.*", "^/pricing", "([", "decision", "b2b"])
BASE = {
    "id": "base", "version": 1, "half_life": "30d", "thresholds": {"mql": 50},
    "engagement_cap": {"max": 100},
    "fit": [{"id": "senior", "points": 10, "when": {"seniority": {"in": ["vp", "director"]}}}],
    "engagement": [{"id": "pricing", "on": ["web.page_viewed"], "points": 20,
                    "when": {"path": {"matches": "^/pricing"}},
                    "cap": {"points": 20, "per": "1d"}}],
    "interests": {"on": ["web.webinar_*"]},
    "journey": {"rules": [{"stage": "decision", "on": "web.page_viewed"}]},
}


def load_or_refuse(directory: Path, document: Any) -> None:
    fuzz.load_or_refuse(directory, document, load_models, ModelFileError)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_values | st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
def test_random_documents_load_or_raise_model_file_error(
    tmp_path_factory: pytest.TempPathFactory, document: Any
) -> None:
    load_or_refuse(tmp_path_factory.getbasetemp(), document)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_models_load_or_raise_model_file_error(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    document = fuzz.mutate(copy.deepcopy(BASE), data, json_values)
    load_or_refuse(tmp_path_factory.getbasetemp(), document)
