"""Message templates: Jinja2 files under `<root>/<name>/` (default `config/templates`):

    subject.txt, body.txt, body.html   email (body.html optional: without it, text only)
    sms.txt                            SMS
    body.txt                           CRM task body / webhook text (optional for those)

Rendering is sandboxed (`SandboxedEnvironment`: templates are config, not code), strict (any
undefined variable is an error, never an empty string: write `{{ first_name | default("there")
}}` for a fallback) and HTML-escaped in `.html` files. Every failure, a missing file included,
is a `TemplateError` naming the template and file, so the message fails whole instead of going
out half-rendered. Files starting with `_` (e.g. `_layouts/`) are shared building blocks for
`{% extends %}` / `{% include %}`. Edited files are picked up without a restart.

Variables: the lead's context at the top level (`first_name`, `last_name`, `email`, `phone`,
`title`, `company`, `industry`, `country`, `timezone`, `owner_id`, `seniority`, `interests`,
`stage`, `journey_stage`, `scores`; blank values are left out so `default` applies), `context`
(the same as one mapping), `lead_id`, `message_id`, `program_id`, `step_id`, `template`,
`subject` / `due_at` (tasks), `brand`, `sender_name`, `site_url`, and `unsubscribe_url` (all
channels but CRM tasks, whose text goes to the owner)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from services.dispatch.domain.email import EmailContent
from services.dispatch.domain.errors import TemplateError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_RUNTIME_ERRORS = (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
                   AttributeError, RecursionError)
CHANNEL_FILES = {"email": ("subject.txt", "body.txt"), "sms": ("sms.txt",),
                 "crm_task": (), "webhook": ()}
"""The files each channel requires of a template."""


class TemplateStore:
    """Renders the templates below `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(root), undefined=StrictUndefined,
            autoescape=lambda filename: bool(filename and filename.endswith(".html")),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)

    def render_email(self, name: str, variables: Mapping[str, Any]) -> EmailContent:
        """Subject (one line), text part and, if the template has one, the HTML part."""
        subject = " ".join(self.render(name, "subject.txt", variables).split())
        if not subject:
            raise TemplateError(f"template '{name}': subject.txt renders empty")
        text = self.render(name, "body.txt", variables)
        html = self.render(name, "body.html", variables) if self.has(name, "body.html") else None
        return EmailContent(subject, text, html)

    def render(self, name: str, file: str, variables: Mapping[str, Any]) -> str:
        """One file of template `name`, rendered; it must not render blank."""
        self._check_name(name)
        if not self.has(name, file):
            raise TemplateError(f"template '{name}' has no {file} "
                                f"(looked for {self.root / name / file})")
        where = f"{name}/{file}"
        try:
            out = self._env.get_template(where).render(dict(variables))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{where}:{exc.lineno}: syntax error: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{where}: {exc.message}") from None
        except _RUNTIME_ERRORS as exc:
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from None
        if not out.strip():
            raise TemplateError(f"{where} renders empty")
        return out.strip() + "\n"

    def optional(self, name: str | None, file: str,
                 variables: Mapping[str, Any]) -> str | None:
        """`render` when template `name` has `file`, else None."""
        if name is None or not self.has(name, file):
            return None
        return self.render(name, file, variables)

    def has(self, name: str, file: str) -> bool:
        self._check_name(name)
        return (self.root / name / file).is_file()

    def require(self, name: str | None, channel: str) -> None:
        """TemplateError unless template `name` exists with the files `channel` needs."""
        if name is None:
            if CHANNEL_FILES[channel]:
                raise TemplateError(f"a {channel} message needs a template")
            return
        self._check_name(name)
        if not (self.root / name).is_dir():
            raise TemplateError(f"template '{name}' not found (no directory {self.root / name})")
        for file in CHANNEL_FILES[channel]:
            if not self.has(name, file):
                raise TemplateError(f"template '{name}' has no {file} "
                                    f"(needed for {channel}; looked in {self.root / name})")

    def names(self) -> list[str]:
        """Every template (directory) name, sorted; `_`-prefixed shared parts excluded."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(("_", ".")))

    def check(self) -> list[str]:
        """Syntax problems of every template file (`name/file:line: message`); [] when none."""
        problems = []
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.suffix not in (".txt", ".html"):
                continue
            where = path.relative_to(self.root).as_posix()
            try:
                self._env.get_template(where)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{where}:{exc.lineno}: {exc.message}")
        return problems

    def _check_name(self, name: str) -> None:
        if not _NAME.fullmatch(name) or ".." in name:
            raise TemplateError(f"invalid template name {name!r}")
