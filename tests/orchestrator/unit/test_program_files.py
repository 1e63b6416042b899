"""Program files and the contact policy file: the shipped ones load; every key of the format is
built into the domain objects; broken files are refused with file, line, path and reason for
every problem; random input never raises anything but ProgramFileError."""

from __future__ import annotations

import copy
import json
import textwrap
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from services.common.config.files import ConfigProblem
from services.orchestrator.adapters.program_files import (
    POLICY_SCHEMA_PATH,
    SCHEMA_PATH,
    PolicyFileError,
    ProgramFileError,
    load_policy,
    load_programs,
)
from services.orchestrator.domain.policy import Cap, ContactPolicy, QuietHours
from tests import config_fuzz as fuzz

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "config" / "programs"
SHIPPED_POLICY = ROOT / "config" / "contact-policy.yaml"
H, D = 3600, 86400

VALID = """\
id: demo
version: 1
name: Demo
trigger:
  event: web.page_viewed
  when: {path: {matches: "^/pricing"}}
steps:
  - {id: wait-1h, wait: 1h}
  - {id: email-1, send: {channel: email, template: hello}}
  - {id: stop, exit: done}
"""
POLICY = """\
default_timezone: America/New_York
quiet_hours: {start: "20:00", end: "08:00"}
caps:
  - {channel: email, max: 3, per: 7d}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(paths: list[Path]) -> list[ConfigProblem]:
    with pytest.raises(ProgramFileError) as caught:
        load_programs(paths)
    return caught.value.problems


def assert_problems(found: list[ConfigProblem], path: Path,
                    expected: list[tuple[int | None, str, str]]) -> None:
    assert [(p.file, p.line, p.path) for p in found] == [(str(path), line, at)
                                                         for line, at, _ in expected]
    for problem, (_, _, message) in zip(found, expected, strict=True):
        assert message in problem.message


# -- the shipped files -----------------------------------------------------------------------


def test_shipped_programs_and_policy_load() -> None:
    programs = {p.id: p for p in load_programs([SHIPPED])}
    assert sorted(programs) == sorted(path.stem for path in SHIPPED.glob("*.yaml"))
    assert len(programs) == 12
    assert load_policy(SHIPPED_POLICY) == ContactPolicy(
        caps=(Cap("email", 3, 7 * D), Cap("sms", 2, 7 * D), Cap("any", 4, 7 * D)),
        quiet_hours=QuietHours(time(20), time(8)), default_timezone="UTC",
        sms_requires_consent=True)


def test_schemas_are_valid_and_their_examples_load(tmp_path: Path) -> None:
    program_schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    policy_schema = json.loads(POLICY_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(program_schema)
    Draft202012Validator.check_schema(policy_schema)
    (program,) = load_programs([write(tmp_path, "p.yaml",
                                      yaml.safe_dump(program_schema["examples"][0]))])
    assert program.id == "pricing-abandoner"
    policy = load_policy(write(tmp_path, "c.yaml", yaml.safe_dump(policy_schema["examples"][0])))
    assert policy.default_timezone == "America/New_York"


# -- what a file becomes ---------------------------------------------------------------------

FULL = """\
id: full
version: 3
name: Full
description: Every key
priority: 70
trigger: {date: {field: contract_renewal_date, offset: -90d}}
entry: {stages: [lead, mql], when: {consent.sms: granted}}
exclude_stages: [sql, customer]
reentry: 30d
max_event_age: 2h
goal: {event: "email.*", when: {url: {matches: demo}}}
exit_on_unsubscribe: false
steps:
  - {id: wait-1h, wait: 1h}
  - {id: email-1, send: {channel: email, template: hello, expires_after: 2d}}
  - id: wait-click
    wait_for: {event: email.clicked, timeout: 3d, then: call}
    next: route
  - id: route
    branch:
      - {when: {interests: {contains: analytics}}, goto: call}
  - {id: call, task: {subject: Offer a call, template: call-brief}}
  - {id: promote, set_stage: mql, next: tag}
  - {id: chain, enroll: other}
  - {id: tag, tag: quiet}
  - {id: stop, exit: no-click}
"""
OTHER = "id: other\nversion: 1\nname: Other\ntrigger: manual\nsteps: [{id: hi, tag: hi}]\n"


def test_every_key_is_built_into_the_program(tmp_path: Path) -> None:
    full, other = load_programs([write(tmp_path, "a.yaml", FULL),
                                 write(tmp_path, "b.yaml", OTHER)])
    assert (full.id, full.version, full.name, full.description, full.priority) == (
        "full", 3, "Full", "Every key", 70)
    assert (full.trigger.kind, full.trigger.date_field, full.trigger.offset_seconds) == (
        "date", "contract_renewal_date", -90 * D)
    assert full.stages == {"lead", "mql"} and full.exclude_stages == {"sql", "customer"}
    assert full.entry({"consent.sms": "granted"}) and not full.entry({})
    assert (full.reentry, full.reentry_after_seconds, full.exit_on_unsubscribe) == (
        "after", 30 * D, False)
    assert full.max_event_age_seconds == 2 * H
    assert full.goal is not None and full.goal.matches("email.clicked", {"url": "/demo"})
    assert not full.goal.matches("web.page_viewed", {"url": "/demo"})
    steps = {s.id: s for s in full.steps}
    assert (steps["wait-1h"].kind, steps["wait-1h"].seconds) == ("wait", H)
    send = steps["email-1"]
    assert (send.channel, send.template, send.expires_seconds) == ("email", "hello", 2 * D)
    wait = steps["wait-click"]
    assert (wait.kind, wait.seconds, wait.on_event, wait.on_timeout) == (
        "wait_for", 3 * D, "call", "route")  # `next` is the default of on_timeout
    assert wait.event is not None and wait.event.types == {"email.clicked"}
    route = steps["route"]
    assert [b.goto for b in route.branches] == ["call"] and route.otherwise is None
    assert route.branches[0].when({"interests": ["analytics"]})
    task = steps["call"]
    assert (task.kind, task.channel, task.subject, task.due_seconds, task.template) == (
        "task", "crm_task", "Offer a call", D, "call-brief")
    assert (steps["promote"].stage, steps["promote"].next) == ("mql", "tag")
    assert (steps["chain"].program, steps["tag"].tag, steps["stop"].reason) == (
        "other", "quiet", "no-click")
    assert other.trigger.kind == "manual"


@pytest.mark.parametrize(("trigger", "expected"), [
    ("{stage: sql}", {"kind": "stage", "stage": "sql"}),
    ("{threshold: {model: b2b, name: mql}}",
     {"kind": "threshold", "model": "b2b", "threshold": "mql"}),
    ("{inactivity: 60d}", {"kind": "inactivity", "inactive_seconds": 60 * D}),
    ("{date: {field: renewal, offset: 2w}}",
     {"kind": "date", "date_field": "renewal", "offset_seconds": 14 * D}),
    ("{date: {field: renewal}}", {"kind": "date", "offset_seconds": 0}),
    ("{event: 'web.webinar_*'}", {"kind": "event"}),
])
def test_triggers(tmp_path: Path, trigger: str, expected: dict[str, Any]) -> None:
    text = VALID.replace('  event: web.page_viewed\n  when: {path: {matches: "^/pricing"}}\n',
                         f"  {trigger[1:-1]}\n")
    (program,) = load_programs([write(tmp_path, "p.yaml", text)])
    assert {key: getattr(program.trigger, key) for key in expected} == expected
    if program.trigger.kind == "event":
        assert program.trigger.event is not None
        assert program.trigger.event.types == {"web.webinar_registered", "web.webinar_attended"}


def test_defaults(tmp_path: Path) -> None:
    (program,) = load_programs([write(tmp_path, "p.yaml", VALID)])
    assert (program.priority, program.reentry, program.exit_on_unsubscribe) == (
        50, "never", True)
    assert (program.stages, program.exclude_stages, program.goal) == (None, frozenset(), None)
    assert program.description == "" and program.entry({})
    assert program.max_event_age_seconds == 3 * 86400  # what a lead did lately
    (day,) = load_programs([write(tmp_path, "q.yaml", VALID + "max_event_age: 1d\n")])
    assert day.max_event_age_seconds == D


# -- broken program files --------------------------------------------------------------------

STEP = "  - {id: wait-1h, wait: 1h}\n"
BROKEN = [
    pytest.param(VALID + "exclude_stage: [sql]\n",
                 [(11, "exclude_stage", "unknown key (did you mean 'exclude_stages'?)")],
                 id="unknown-key-with-suggestion"),
    pytest.param(VALID.replace(STEP, "  - {id: wait-1h, wiat: 1h}\n"),
                 [(8, "steps[0].wiat", "unknown key (did you mean 'wait'?)")],
                 id="unknown-step-key"),
    pytest.param(VALID.replace(STEP, "  - {id: wait-1h, wait: 1h, tag: x}\n"),
                 [(8, "steps[0]", "needs exactly one action: wait, wait_for, send, task, "
                                  "branch, set_stage, tag, enroll, exit (found wait, tag)")],
                 id="two-actions-in-one-step"),
    pytest.param(VALID.replace(STEP, "  - {id: wait-1h}\n"),
                 [(8, "steps[0]", "needs exactly one action")], id="no-action"),
    pytest.param(VALID + "  - id: route\n    branch:\n"
                         "      - {when: {stage: mql}, goto: nowhere}\n",
                 [(13, "steps[3].branch[0].goto", "no step 'nowhere' in this program")],
                 id="goto-missing-step"),
    pytest.param(VALID.replace(STEP, "  - {id: wait-1h, wait: 1h, next: stpo}\n"),
                 [(8, "steps[0].next", "no step 'stpo' in this program (did you mean 'stop'?)")],
                 id="next-missing-step"),
    pytest.param(VALID.replace(STEP, "  - id: wait-1h\n    wait_for: {event: email.clicked, "
                                     "timeout: 1d, then: call, on_timeout: stop}\n"),
                 [(9, "steps[0].wait_for.then", "no step 'call'")], id="then-missing-step"),
    pytest.param(VALID.replace(STEP, "  - {id: route, branch: [{when: {stage: mql}, goto: stop}],"
                                     " otherwise: els}\n"),
                 [(8, "steps[0].otherwise", "no step 'els'")], id="otherwise-missing-step"),
    pytest.param(VALID + "  - {id: wait-1h, wait: 2h}\n",
                 [(11, "steps[3].id", "duplicate step id 'wait-1h' (first used at steps[0], "
                                      "line 8)")], id="duplicate-step-id"),
    pytest.param(VALID + "exclude_stages: [sql, customers]\n",
                 [(11, "exclude_stages[1]", "unknown stage 'customers' (did you mean "
                                            "'customer'?)")], id="unknown-stage"),
    pytest.param(VALID + "  - {id: promote, set_stage: hot}\n",
                 [(11, "steps[3].set_stage", "unknown stage 'hot' (one of: subscriber, lead")],
                 id="unknown-set-stage"),
    pytest.param(VALID + "  - {id: chain, enroll: welcom}\n",
                 [(11, "steps[3].enroll", "no program 'welcom' in the program files")],
                 id="enroll-unknown-program"),
    pytest.param(VALID + "  - {id: chain, enroll: demo}\n",
                 [(11, "steps[3].enroll", "cannot enroll a lead in itself")], id="enroll-itself"),
    pytest.param(VALID.replace("wait: 1h", "wait: 1 hour"),
                 [(8, "steps[0].wait", "must be a duration: a positive whole number")],
                 id="bad-duration"),
    pytest.param(VALID.replace("  event: web.page_viewed\n", "  event: web.page_view\n"),
                 [(5, "trigger.event", "matches no known event type (did you mean "
                                       "'web.page_viewed'?)")], id="unknown-event-type"),
    pytest.param(VALID + "goal: {event: [email.clicked, 'shop.*']}\n",
                 [(11, "goal.event[1]", "matches no known event type")], id="glob-matches-none"),
    pytest.param(VALID.replace('"^/pricing"', '"^/(pricing"'),
                 [(6, "trigger.when.path.matches", "invalid regular expression")],
                 id="bad-regex"),
    pytest.param(VALID + "entry: {when: {any: [{stage: lead}, {title: {maches: cto}}]}}\n",
                 [(11, "entry.when.any[1].title.maches", "unknown operator (did you mean "
                                                         "'matches'?)")],
                 id="unknown-operator"),
    pytest.param(VALID + "  - {id: route, branch: [{when: {score.b2b: {gt: high}}, goto: stop}]}\n",
                 [(11, 'steps[3].branch[0].when["score.b2b"].gt', "must be a number")],
                 id="bad-branch-condition"),
    pytest.param(VALID.replace("  event: web.page_viewed\n",
                               "  event: web.page_viewed\n  stage: sql\n"),
                 [(4, "trigger", "needs exactly one kind of trigger: event, stage, threshold, "
                                 "inactivity or date (found event, stage)")],
                 id="trigger-with-two-kinds"),
    pytest.param(VALID.replace("  event: web.page_viewed\n", ""),
                 [(4, "trigger", "needs exactly one kind of trigger: event, stage, threshold, "
                                 "inactivity or date (or write trigger: manual)")],
                 id="trigger-without-kind"),
    pytest.param(VALID + "entry: {stages: [lead, sql]}\nexclude_stages: [sql]\n",
                 [(11, "entry.stages[1]", "'sql' is also in exclude_stages")],
                 id="entry-stage-excluded"),
    pytest.param(VALID.replace("  event: web.page_viewed\n", "  stage: sql\n"),
                 [(6, "trigger.when", "only applies to an event trigger")],
                 id="when-without-event"),
    pytest.param(VALID.replace('  event: web.page_viewed\n  when: {path: {matches: "^/pricing"}}\n',
                               "  manul\n").replace("trigger:\n", "trigger:"),
                 [(4, "trigger", "must be one of: manual")], id="trigger-text"),
    pytest.param(VALID + "trigger2: manual\n", [(11, "trigger2", "unknown key")],
                 id="unknown-top-level-key"),
    pytest.param(VALID + "reentry: sometimes\n",
                 [(11, "reentry", "must be never, always or a duration")], id="bad-reentry"),
    pytest.param(VALID + "max_event_age: 0d\n",
                 [(11, "max_event_age", "must be none or a duration")], id="bad-max-event-age"),
    pytest.param(VALID + "priority: 101\n", [(11, "priority", "must be at most 100")],
                 id="priority-range"),
    pytest.param(VALID.replace("template: hello", "template: hello, expires_after: 2 days"),
                 [(9, "steps[1].send.expires_after", "must be a duration")], id="bad-expiry"),
    pytest.param(VALID.replace("channel: email", "channel: emial"),
                 [(9, "steps[1].send.channel", "must be one of: email, sms, webhook")],
                 id="unknown-channel"),
    pytest.param(VALID.replace("id: demo", "id: Demo"),
                 [(1, "id", "must be a lowercase letter")], id="bad-program-id"),
    pytest.param(VALID.replace("name: Demo\n", ""), [(1, "name", "is required")],
                 id="missing-name"),
    pytest.param(VALID.replace(STEP, "  - {id: wait-1h, wait: 1h, otherwise: stop}\n"),
                 [(8, "steps[0].otherwise", "only applies to a branch step")],
                 id="otherwise-without-branch"),
    pytest.param(VALID.replace("exit: done}", "exit: done, next: wait-1h}"),
                 [(10, "steps[2].next", "an exit step ends the enrollment")], id="next-of-exit"),
    pytest.param(VALID.replace("exit: done}", "tag: x, next: email-1}"),
                 [(10, "steps[2]", "goes back to step 'email-1' without a wait")],
                 id="loop-without-wait"),
    pytest.param(VALID.replace('  event: web.page_viewed\n  when: {path: {matches: "^/pricing"}}\n',
                               "  stage: sql\n") + "exclude_stages: [sql]\n",
                 [(5, "trigger.stage", "is in exclude_stages")], id="trigger-stage-excluded"),
    pytest.param(VALID + "trigger: manual\n",
                 [(11, "trigger", "duplicate key")], id="duplicate-yaml-key"),
    pytest.param(VALID.replace('  event: web.page_viewed\n  when: {path: {matches: "^/pricing"}}\n',
                               "  date: {field: renewal, offset: -90 days}\n"),
                 [(5, "trigger.date.offset", "must be a duration, with a minus for before")],
                 id="bad-date-offset"),
    pytest.param("", [(None, "(root)", "is empty: expected a program (id, version, name, "
                                       "trigger, steps)")], id="empty-file"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_program_files(tmp_path: Path, text: str,
                              expected: list[tuple[int | None, str, str]]) -> None:
    path = write(tmp_path, "program.yaml", text)
    assert_problems(problems([path]), path, expected)


def test_duplicate_program_id_across_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", VALID.replace("version: 1", "version: 2"))
    (problem,) = problems([first, second])
    assert (problem.file, problem.line, problem.path) == (str(second), 1, "id")
    assert problem.message == f"duplicate program id 'demo' (also in {first}:1)"


def test_enroll_may_name_a_program_of_another_file(tmp_path: Path) -> None:
    chain = VALID + "  - {id: chain, enroll: other}\n"
    programs = load_programs([write(tmp_path, "a.yaml", chain), write(tmp_path, "b.yaml", OTHER)])
    assert [p.id for p in programs] == ["demo", "other"]


def test_enroll_of_a_broken_program_reports_only_the_broken_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID + "  - {id: chain, enroll: other}\n")
    broken = write(tmp_path, "b.yaml", OTHER.replace("version: 1", "version: one"))
    (problem,) = problems([tmp_path])
    assert (problem.file, problem.path) == (str(broken), "version")


def test_problems_of_all_files_are_collected_and_rendered(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID.replace("1h", "1x"))
    second = write(tmp_path, "b.yml", VALID.replace("id: demo", "id: b").replace(
        "exit: done", "exit: done, tag: x"))
    with pytest.raises(ProgramFileError) as caught:
        load_programs([tmp_path])
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 problems in program files:"
    assert lines[1].startswith(f"  {first}:8: steps[0].wait: must be a duration")
    assert lines[2].startswith(f"  {second}:10: steps[2]: needs exactly one action")


def test_no_program_files() -> None:
    (problem,) = problems([])
    assert problem.message == "no program files given"


# -- the contact policy ----------------------------------------------------------------------


def test_policy_without_quiet_hours_or_caps(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "p.yaml", "default_timezone: Europe/Berlin\n"
                               "quiet_hours: null\ncaps: []\nsms_requires_consent: false\n"))
    assert policy == ContactPolicy(caps=(), quiet_hours=None, default_timezone="Europe/Berlin",
                                   sms_requires_consent=False)


BROKEN_POLICIES = [
    pytest.param(POLICY.replace("America/New_York", "America/New_Yrok"),
                 [(1, "default_timezone", "unknown time zone (did you mean "
                                          "'America/New_York'?)")], id="time-zone-typo"),
    pytest.param(POLICY.replace("America/New_York", "Mars/Olympus_Mons"),
                 [(1, "default_timezone", "unknown time zone")], id="unknown-time-zone"),
    pytest.param(POLICY.replace("20:00", "25:00"),
                 [(2, "quiet_hours.start", "must be a time of day from 00:00 to 23:59")],
                 id="quiet-hours-25"),
    pytest.param(POLICY.replace('"08:00"', "8am"),
                 [(2, "quiet_hours.end", "must be a time of day")], id="quiet-hours-8am"),
    pytest.param(POLICY.replace('"08:00"', '"20:00"'),
                 [(2, "quiet_hours.end", "is the same as start")], id="quiet-hours-empty"),
    pytest.param(POLICY.replace("channel: email", "channel: push"),
                 [(4, "caps[0].channel", "must be one of: email, sms, any")],
                 id="cap-channel"),
    pytest.param(POLICY.replace("per: 7d", "per: week"),
                 [(4, "caps[0].per", "must be a duration")], id="cap-window"),
    pytest.param(POLICY.replace("max: 3", "max: 0"),
                 [(4, "caps[0].max", "must be at least 1")], id="cap-max"),
    pytest.param(POLICY + "quiet: null\n",
                 [(5, "quiet", "unknown key (did you mean 'quiet_hours'?)")], id="unknown-key"),
    pytest.param(POLICY.replace("caps:\n  - {channel: email, max: 3, per: 7d}\n", ""),
                 [(1, "caps", "is required")], id="missing-caps"),
    pytest.param("", [(None, "(root)", "is empty: expected a contact policy "
                                       "(default_timezone, quiet_hours, caps)")], id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN_POLICIES)
def test_broken_policy_files(tmp_path: Path, text: str,
                             expected: list[tuple[int | None, str, str]]) -> None:
    path = write(tmp_path, "policy.yaml", text)
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    assert_problems(caught.value.problems, path, expected)
    assert str(caught.value).startswith("1 problem in contact policy files:")


@pytest.mark.parametrize(("name", "message"), [
    ("missing.yaml", "no such file or directory"),
    ("a-directory", "is a directory: expected the contact policy file"),
])
def test_policy_path_problems(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    if name == "a-directory":
        path.mkdir()
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.message) == (str(path), None, message)


# -- hypothesis: nothing but ProgramFileError ------------------------------------------------

KEYS = ["id", "version", "name", "trigger", "event", "when", "stage", "threshold", "model",
        "inactivity", "date", "field", "offset", "entry", "stages", "exclude_stages", "reentry",
        "goal", "steps", "wait", "wait_for", "timeout", "then", "on_timeout", "send", "channel",
        "template", "task", "subject", "branch", "goto", "otherwise", "set_stage", "tag",
        "enroll", "exit", "next", "matches", "any"]
json_values = fuzz.json_values(
    KEYS, ["1h", "-90d", "web.page_viewed", "email.*", "manual", "sql", "stop", "wait-1h", "base",
           "never", "email", "(["], floats=False)
BASE: dict[str, Any] = {
    "id": "base", "version": 1, "name": "Base", "priority": 10,
    "trigger": {"event": ["web.page_viewed"], "when": {"path": {"matches": "^/pricing"}}},
    "entry": {"stages": ["lead"], "when": {"title": {"matches": "cto"}}},
    "exclude_stages": ["sql"], "reentry": "30d",
    "goal": {"event": "web.form_submitted", "when": {"form_type": "demo_request"}},
    "steps": [
        {"id": "wait-1h", "wait": "1h"},
        {"id": "route", "branch": [{"when": {"stage": "lead"}, "goto": "stop"}],
         "otherwise": "email"},
        {"id": "email", "send": {"channel": "email", "template": "t", "expires_after": "1d"}},
        {"id": "click", "wait_for": {"event": "email.clicked", "timeout": "3d", "then": "stop"}},
        {"id": "call", "task": {"subject": "Call", "due": "1d"}, "next": "stop"},
        {"id": "stop", "exit": "done"},
    ],
}


def load_or_refuse(directory: Path, document: Any) -> None:
    fuzz.load_or_refuse(directory, document, load_programs, ProgramFileError)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_values | st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
def test_random_documents_load_or_raise_program_file_error(
    tmp_path_factory: pytest.TempPathFactory, document: Any
) -> None:
    load_or_refuse(tmp_path_factory.getbasetemp(), document)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_programs_load_or_raise_program_file_error(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    document = fuzz.mutate(copy.deepcopy(BASE), data, json_values | st.sampled_from(KEYS))
    load_or_refuse(tmp_path_factory.getbasetemp(), document)
