"""Templates: personalization with fallbacks, strict failures that name the template, the
sandbox, HTML escaping, and every template the shipped programs use exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.records import SendMessage
from services.dispatch.adapters.templates import TemplateStore
from services.dispatch.domain.errors import TemplateError
from services.dispatch.domain.messages import template_variables
from services.dispatch.entrypoints.check import check, program_files, referenced_templates
from tests.support import ROOT

SHIPPED = TemplateStore(ROOT / "config" / "templates")
GLOBALS = {"brand": "Acme", "sender_name": "The Acme team", "site_url": "https://acme.example",
           "unsubscribe_url": "https://t.example/t/unsubscribe/tok"}


def command(**context: Any) -> SendMessage:
    return SendMessage(message_id="m1", lead_id="lead-1", channel="email",
                       template="pricing-followup", program_id="pricing", step_id="email-1",
                       context=context)


def variables(**context: Any) -> dict[str, Any]:
    return template_variables(command(**context), **GLOBALS)


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    def write(name: str, file: str, text: str) -> None:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / file).write_text(text)

    write("hello", "subject.txt", "Hello {{ first_name | default('there') }}\n")
    write("hello", "body.txt", "Hi {{ first_name | default('there') }}, about {{ company }}.")
    write("hello", "body.html", "<p>Hi {{ first_name | default('there') }}</p>")
    write("broken", "subject.txt", "{% if %}")
    write("sneaky", "body.txt", "{{ first_name.__class__.__mro__ }}")
    write("blank", "subject.txt", "{% if first_name is defined %}{{ first_name }}{% endif %}")
    write("blank", "body.txt", "x")
    return TemplateStore(tmp_path)


def test_personalizes_and_falls_back(store: TemplateStore) -> None:
    full = store.render_email("hello", variables(first_name="Ada", company="Acme Corp"))
    assert (full.subject, full.text) == ("Hello Ada", "Hi Ada, about Acme Corp.\n")
    assert full.html == "<p>Hi Ada</p>\n"
    bare = store.render("hello", "subject.txt", variables())
    assert bare == "Hello there\n"


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_a_blank_value_counts_as_missing_so_the_fallback_applies(
        store: TemplateStore, blank: Any) -> None:
    assert store.render("hello", "subject.txt", variables(first_name=blank)) == "Hello there\n"


def test_a_missing_variable_without_fallback_fails_naming_template_and_variable(
        store: TemplateStore) -> None:
    with pytest.raises(TemplateError, match=r"hello/body\.txt: 'company' is undefined"):
        store.render_email("hello", variables(first_name="Ada"))


def test_a_missing_template_and_a_missing_file_are_named(store: TemplateStore) -> None:
    with pytest.raises(TemplateError, match="template 'nope' not found"):
        store.require("nope", "email")
    with pytest.raises(TemplateError, match=r"template 'hello' has no sms\.txt"):
        store.require("hello", "sms")
    with pytest.raises(TemplateError, match=r"has no sms\.txt"):
        store.render("hello", "sms.txt", variables())


def test_syntax_errors_are_reported_with_the_line(store: TemplateStore) -> None:
    with pytest.raises(TemplateError, match=r"broken/subject\.txt:1: syntax error"):
        store.render("broken", "subject.txt", variables())
    assert [p.split(":")[0] for p in store.check()] == ["broken/subject.txt"]


def test_the_sandbox_refuses_python_internals(store: TemplateStore) -> None:
    with pytest.raises(TemplateError, match=r"sneaky/body\.txt"):
        store.render("sneaky", "body.txt", variables(first_name="Ada"))


def test_an_empty_subject_fails_instead_of_sending_a_blank_one(store: TemplateStore) -> None:
    with pytest.raises(TemplateError, match="renders empty"):
        store.render_email("blank", variables())


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden"])
def test_template_names_cannot_leave_the_directory(store: TemplateStore, name: str) -> None:
    with pytest.raises(TemplateError, match="invalid template name"):
        store.render(name, "body.txt", variables())


def test_html_is_escaped_and_text_is_not(store: TemplateStore) -> None:
    evil = variables(first_name="<b>Ada</b> & co", company="R&D")
    assert store.render("hello", "body.html", evil) == \
        "<p>Hi &lt;b&gt;Ada&lt;/b&gt; &amp; co</p>\n"
    assert store.render("hello", "body.txt", evil) == "Hi <b>Ada</b> & co, about R&D.\n"


def test_shipped_email_templates_never_greet_nobody() -> None:
    for name in SHIPPED.names():
        if not SHIPPED.has(name, "subject.txt"):
            continue
        content = SHIPPED.render_email(name, variables(first_name=""))
        assert "Hi there," in content.text, name
        assert content.html is not None and "Hi there," in content.html, name
        assert GLOBALS["unsubscribe_url"] in content.text and "Hi ," not in content.text


def test_shipped_templates_render_with_a_full_profile() -> None:
    full = variables(first_name="Ada", last_name="Lovelace", company="Acme Corp",
                     title="CTO", email="ada@acme.example", industry="Banking",
                     country="GB", interests=["streaming"], stage="mql",
                     journey_stage="decision",
                     scores={"b2b": {"total": 72.5, "breakdown": [
                         {"rule": "pricing-page", "points": 20}, {"rule": "free-mail",
                                                                  "points": -10}]}})
    brief = SHIPPED.render("hot-lead-brief", "body.txt", full)
    assert "Lead: Ada Lovelace, CTO at Acme Corp" in brief
    assert "- b2b score 72.5: pricing-page +20, free-mail -10" in brief
    assert "Hi Ada," in SHIPPED.render_email("pricing-followup", full).text


def test_every_template_the_shipped_programs_use_exists() -> None:
    used = referenced_templates(program_files([str(ROOT / "config" / "programs")]))
    assert {"pricing-followup", "welcome-1-hello"} <= set(used)
    assert check(SHIPPED, [str(ROOT / "config" / "programs")]) == []


def test_check_reports_a_template_a_program_names_but_nobody_wrote(tmp_path: Path) -> None:
    program = tmp_path / "p.yaml"
    program.write_text("id: p\nsteps:\n  - {id: s, send: {channel: sms, template: ghost}}\n")
    assert check(SHIPPED, [str(program)]) == [
        f"template 'ghost' not found (no directory {SHIPPED.root / 'ghost'})"]
