"""Config files for any service: YAML read with the line of every path, checked against the
service's JSON Schema; the service adds its own problems with lines and gets one error for all."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from services.common.config.files import (
    ConfigFileError,
    ConfigFiles,
    ConfigProblem,
    read_config_files,
)

PROGRAM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "steps"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z]+$"},
        "paused": {"type": "boolean"},
        "audience": {"type": "array", "items": {"type": "string"}},
        "starts": {"type": "string"},
        "steps": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["wait"], "additionalProperties": False,
                "properties": {"wait": {"type": "string", "pattern": "^[1-9][0-9]*(m|h|d|w)$"},
                               "send": {"type": "string"}},
            },
        },
    },
}
WELCOME = """\
id: welcome
steps:
  - wait: 1d
    send: hello
  - wait: 3d
    send: tips
"""


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schemas") / "program.schema.json"
    path.write_text(json.dumps(PROGRAM_SCHEMA), encoding="utf-8")
    return path


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def read(schema: Path, *paths: Path) -> ConfigFiles:
    return read_config_files(paths, schema=schema, kind="program",
                             pattern_messages={"^[a-z]+$": "must be lowercase letters"})


def test_the_documented_usage(tmp_path: Path, schema: Path) -> None:
    first = write(tmp_path, "a.yaml", WELCOME)
    second = write(tmp_path, "b.yaml", "# the same id again\n" + WELCOME)
    files = read(schema, tmp_path)
    defined: dict[str, str] = {}
    for file in files:
        program_id = file.data["id"]
        if program_id in defined:
            file.add(("id",), f"duplicate program id (also in {defined[program_id]})")
        defined.setdefault(program_id, f"{file.file}:{file.line_of(('id',))}")
    with pytest.raises(ConfigFileError) as caught:
        files.check()
    assert str(caught.value) == (f"1 problem in program files:\n"
                                 f"  {second}:2: id: duplicate program id (also in {first}:1)")


def test_valid_files_are_iterated_with_data_and_lines(tmp_path: Path, schema: Path) -> None:
    files = read(schema, write(tmp_path, "p.yaml", WELCOME))
    (file,) = files
    assert file.data["steps"][1] == {"wait": "3d", "send": "tips"}
    assert [file.line_of(("steps", 1)), file.line_of(("steps", 1, "send"))] == [5, 6]
    assert file.line_of(("steps", 1, "send", "no", "such", "path")) == 6  # nearest ancestor
    assert file.line_of(()) == 1
    files.check()
    assert files.problems == []


def test_invalid_files_are_not_iterated_and_all_problems_are_listed(
    tmp_path: Path, schema: Path
) -> None:
    good = write(tmp_path, "a.yaml", WELCOME)
    bad = write(tmp_path, "b.yaml", "id: Welcome\nsteps:\n  - wait: 2 days\n    sned: x\n")
    empty = write(tmp_path, "c.yaml", "# nothing yet\n")
    files = read(schema, tmp_path, tmp_path / "missing.yaml")
    assert [file.file for file in files] == [str(good)]
    assert [(p.file, p.line, p.path, p.message) for p in files.problems] == [
        (str(tmp_path / "missing.yaml"), None, "(root)", "no such file or directory"),
        (str(bad), 1, "id", "must be lowercase letters"),
        (str(bad), 3, "steps[0].wait", "must be a duration: a positive whole number and a unit "
                                       "m, h, d or w (e.g. 30d)"),
        (str(bad), 4, "steps[0].sned", "unknown key (did you mean 'send'?)"),
        (str(empty), None, "(root)", "is empty: expected a program (id, steps)"),
    ]


def test_no_paths_at_all(schema: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        read(schema).check()
    (problem,) = caught.value.problems
    assert str(problem) == "(none): (root): no program files given"


def test_yaml_is_read_the_yaml_1_2_way(tmp_path: Path, schema: Path) -> None:
    path = write(tmp_path, "p.yaml", WELCOME + "paused: false\naudience: [NO, yes, on]\n"
                                               "starts: 2026-01-01\n")
    (file,) = read(schema, path)
    assert file.data["paused"] is False
    assert file.data["audience"] == ["NO", "yes", "on"]
    assert file.data["starts"] == "2026-01-01"


def test_problems_only_the_yaml_shows(tmp_path: Path, schema: Path) -> None:
    path = write(tmp_path, "p.yaml", WELCOME + "id: again\n")
    files = read(schema, path)
    assert [file.file for file in files] == [str(path)]  # still checked by the service
    assert files.problems == [ConfigProblem(str(path), 7, "id", "duplicate key")]


def test_error_message_counts_problems_and_names_the_kind() -> None:
    problems = [ConfigProblem("a.yaml", 3, "id", "is required"),
                ConfigProblem("b.yaml", None, "(root)", "is empty")]
    assert str(ConfigFileError(problems)).splitlines() == [
        "2 problems in config files:", "  a.yaml:3: id: is required", "  b.yaml: (root): is empty"]
    assert str(ConfigFileError(problems[:1], kind="program")).splitlines()[0] == (
        "1 problem in program files:")
