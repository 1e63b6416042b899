"""`nurture-dispatch check`: every template parses, and every template that a program file
names exists with the files its channel needs (read from the programs' `send` and `task`
steps)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from services.dispatch.adapters.templates import TemplateStore
from services.dispatch.domain.errors import TemplateError


def program_files(paths: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        found += sorted(p for p in path.glob("*.y*ml") if not p.name.startswith(".")) \
            if path.is_dir() else [path]
    return found


def referenced_templates(files: Iterable[Path]) -> dict[str, set[str]]:
    """template name -> the channels programs use it for."""
    used: dict[str, set[str]] = {}
    for file in files:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        steps: list[Any] = doc.get("steps", []) if isinstance(doc, dict) else []
        for step in steps:
            if not isinstance(step, dict):
                continue
            send, task = step.get("send"), step.get("task")
            if isinstance(send, dict) and isinstance(send.get("template"), str):
                used.setdefault(send["template"], set()).add(str(send.get("channel", "email")))
            if isinstance(task, dict) and isinstance(task.get("template"), str):
                used.setdefault(task["template"], set()).add("crm_task")
    return used


def check(store: TemplateStore, programs: Iterable[str]) -> list[str]:
    """Every problem found, one line each; [] when all is well."""
    problems = [f"{store.root}/{line}" for line in store.check()]
    for name, channels in sorted(referenced_templates(program_files(programs)).items()):
        for channel in sorted(channels):
            try:
                store.require(name, channel)
            except TemplateError as exc:
                problems.append(exc.detail)
    return problems


def run_check(args: argparse.Namespace) -> int:
    """`nurture-dispatch check`: the problems on stderr, 1 if there are any."""
    store = TemplateStore(Path(args.templates))
    problems = check(store, args.programs or ["config/programs"])
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"ok: {len(store.names())} templates in {args.templates}")
    return 1 if problems else 0
