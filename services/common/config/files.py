"""Config files as code: YAML files in, schema-valid data with the line of every path out.

What is the same for every kind of config file lives here: collecting the files, reading the YAML,
validating it against a JSON Schema and reporting each problem as `file:line: path: message`.
The service then checks what a schema cannot, reporting on the same file so those problems get
lines too, builds its own objects and raises one error listing every problem of every file:

    files = read_config_files(paths, schema=PROGRAM_SCHEMA, kind="program")
    first: dict[str, str] = {}  # program id -> "file:line" of its first definition
    for file in files:  # the files that parsed and match the schema, in order
        program_id = file.data["id"]
        if program_id in first:
            file.add(("id",), f"duplicate program id (also in {first[program_id]})")
        first.setdefault(program_id, f"{file.file}:{file.line_of(('id',))}")
    files.check()  # ConfigFileError: "1 problem in program files:", then one problem a line

`paths` are files or directories (their `*.yaml` / `*.yml` files, sorted, hidden files skipped);
a file named twice is read once. YAML is read the YAML 1.2 way: only true/false are booleans, so
`on:` stays a key and the country code `NO` stays text; dates stay text. Duplicate keys, keys that
are not text, recursive aliases and infinite or NaN numbers are problems.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.problems import format_path
from services.common.config.durations import DURATION_PATTERN, DURATION_PROBLEM
from services.common.config.schema import Parts, required_keys, schema_problems

__all__ = [
    "NO_FILE", "ROOT", "ConfigFile", "ConfigFileError", "ConfigFiles", "ConfigProblem", "Parts",
    "find_config_files", "format_parts", "read_config_files",
]

ROOT = "(root)"
"""The path of a problem with the file as a whole."""
NO_FILE = "(none)"
"""The file of the problem "no files given"."""

_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class ConfigProblem:
    """One reason a config file is invalid. `line` is 1-based (None when unknown); `path` is
    dotted inside the file with list indices in brackets (`engagement[2].cap.per`), `(root)` for
    the file as a whole; `message` is short and never repeats the offending value in full."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}"


class ConfigFileError(Exception):
    """Config files are invalid; `problems` holds every problem found, in file order, and the
    message lists them all under "N problems in <kind> files:"."""

    def __init__(self, problems: Iterable[ConfigProblem], *, kind: str = "config") -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'' if count == 1 else 's'} in {kind} files:"
        super().__init__("\n".join([head, *(f"  {problem}" for problem in self.problems)]))


def format_parts(parts: Parts) -> str:
    """`("engagement", 2, "cap")` -> `engagement[2].cap`; the empty path is `(root)`."""
    return format_path(parts) if parts else ROOT


@dataclass
class ConfigFile:
    """One file read: its `data`, the line of each path in it and the problems found so far."""

    file: str
    data: Any = None
    lines: dict[Parts, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    schema_valid: bool = False
    """The YAML parsed into data that matches the schema (other problems, such as a duplicate
    key, may still have been found)."""

    def line_of(self, parts: Parts) -> int | None:
        """The line of `parts`, or of its nearest ancestor present in the file."""
        while parts not in self.lines and parts:
            parts = parts[:-1]
        return self.lines.get(parts)

    def add(self, parts: Parts, message: str, *, line: int | None = None) -> None:
        """Record a problem at `parts` (on `line`, by default the line of `parts`)."""
        line = self.line_of(parts) if line is None else line
        self.problems.append(ConfigProblem(self.file, line, format_parts(parts), message))

    def sorted_problems(self) -> list[ConfigProblem]:
        """This file's problems without repeats, by line, then path, then message."""
        unique = dict.fromkeys(self.problems)
        return sorted(unique, key=lambda p: (p.line or 0, p.path, p.message))


@dataclass
class ConfigFiles:
    """The files read by `read_config_files`; iterating yields the schema-valid ones, in order."""

    kind: str
    files: list[ConfigFile]
    path_problems: list[ConfigProblem] = field(default_factory=list)
    """Problems with the paths given (no such file, a directory without YAML files, none)."""

    def __iter__(self) -> Iterator[ConfigFile]:
        return (file for file in self.files if file.schema_valid)

    @property
    def problems(self) -> list[ConfigProblem]:
        """Every problem: those of the paths, then each file's, sorted by line."""
        return [*self.path_problems, *(p for file in self.files for p in file.sorted_problems())]

    def check(self) -> None:
        """Raise ConfigFileError listing every problem, if there is any."""
        if problems := self.problems:
            raise ConfigFileError(problems, kind=self.kind)


def read_config_files(
    paths: Sequence[str | Path], *, schema: Path, kind: str,
    pattern_messages: Mapping[str, str] | None = None,
) -> ConfigFiles:
    """Read and schema-check the YAML files in `paths` (files, or directories of them).

    `schema` is a JSON Schema (draft 2020-12) file; `kind` names what a file holds in messages
    ("no program files given", "is empty: expected a program (id, steps)"); `pattern_messages`
    maps a schema `pattern` to the message for a value not matching it (durations are known).
    Never raises for bad input: every problem is recorded (see `ConfigFiles.check`).
    """
    found, path_problems = find_config_files(paths, kind=kind)
    messages = {DURATION_PATTERN: DURATION_PROBLEM, **(pattern_messages or {})}
    files = [_read(path, schema, kind, messages) for path in found]
    return ConfigFiles(kind, files, path_problems)


def find_config_files(
    paths: Sequence[str | Path], *, kind: str
) -> tuple[list[Path], list[ConfigProblem]]:
    """The YAML files in `paths` (a file named twice counted once) and the problems of paths
    that name none."""
    files: dict[Path, Path] = {}  # resolved -> as given, so a file named twice loads once
    problems = [] if paths else [ConfigProblem(NO_FILE, None, ROOT, f"no {kind} files given")]
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(p for p in given.iterdir() if p.suffix in (".yaml", ".yml")
                           and not p.name.startswith(".") and p.is_file())
            missing = "no *.yaml or *.yml files in this directory"
        else:
            found, missing = ([given] if given.exists() else []), "no such file or directory"
        if not found:
            problems.append(ConfigProblem(str(given), None, ROOT, missing))
        for path in found:
            files.setdefault(path.resolve(), path)
    return list(files.values()), problems


def _read(path: Path, schema: Path, kind: str, messages: Mapping[str, str]) -> ConfigFile:
    file = ConfigFile(str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        file.add((), f"cannot read the file: {exc.strerror or exc}")
        return file
    usable, data = _parse(file, raw)
    if not usable:
        return file
    if data is None:
        required = required_keys(schema)
        listed = f" ({', '.join(required)})" if required else ""
        file.add((), f"is empty: expected {'an' if kind[:1] in 'aeiou' else 'a'} {kind}{listed}")
        return file
    problems = schema_problems(data, schema, messages)
    for parts, message in problems:
        file.add(parts, message)
    file.data, file.schema_valid = data, not problems
    return file


# -- YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader resolving plain scalars the YAML 1.2 way: only true/false are booleans and
    dates stay text (YAML 1.1 turns `on`, `yes`, `NO` into booleans)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TAG + "bool", _TAG + "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _TAG + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _parse(file: ConfigFile, raw: bytes) -> tuple[bool, Any]:
    """(usable, the document in `raw`); fills `file.lines` from the node marks (before
    construction, so merge keys are not yet flattened and duplicate keys can be seen)."""
    loader = _Loader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return True, None
        if not _map_lines(file, node, (), _Walk()):
            return False, None
        return True, loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if (
            exc.context and exc.context_mark and exc.problem_mark) else ""
        file.add((), f"invalid YAML: {exc.problem or exc.context}{context}",
                 line=mark.line + 1 if mark else None)
    except yaml.YAMLError as exc:  # e.g. bytes that are not UTF-8: no mark
        file.add((), f"invalid YAML: {exc}")
    finally:
        loader.dispose()
    return False, None


MAX_VALUES = 100_000  # values of a document, aliases expanded: far above any real config file


@dataclass
class _Walk:
    """The nodes on the current path (a recursive alias), and how many values may still be
    visited: aliases of aliases expand exponentially ("billion laughs"), and so would the
    validation of the data they make."""

    active: set[int] = field(default_factory=set)
    left: int = MAX_VALUES
    over: bool = False  # the budget ran out (reported once)


def _map_lines(file: ConfigFile, node: yaml.Node, parts: Parts, walk: _Walk) -> bool:
    """Record the line of every path under `node` and the problems only the nodes show; False
    if the YAML cannot be turned into data worth validating. Goes on after a problem, so that
    one attempt reports them all."""
    if id(node) in walk.active:
        file.add(parts, "recursive alias is not allowed")
        return False
    if walk.left == 0:
        if not walk.over:
            walk.over = True
            file.add(parts, f"too many values (more than {MAX_VALUES:,}, aliases expanded)",
                     line=node.start_mark.line + 1)
        return False
    walk.left -= 1
    walk.active.add(id(node))
    usable = True
    if isinstance(node, yaml.MappingNode):
        usable = _map_keys(file, node, parts, walk)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            file.lines.setdefault((*parts, index), item.start_mark.line + 1)
            usable &= _map_lines(file, item, (*parts, index), walk)
    elif node.tag == _TAG + "float" and "n" in node.value.lower():  # .inf, .nan
        file.add(parts, "must be a finite number", line=node.start_mark.line + 1)
    file.lines.setdefault(parts, node.start_mark.line + 1)
    walk.active.discard(id(node))
    return usable


def _map_keys(file: ConfigFile, node: yaml.MappingNode, parts: Parts, walk: _Walk) -> bool:
    seen: set[str] = set()
    usable = True
    for key, value in node.value:
        if key.tag == _TAG + "merge":
            continue
        if not isinstance(key, yaml.ScalarNode) or key.tag != _TAG + "str":
            shown = key.value if isinstance(key, yaml.ScalarNode) else "here"
            file.add(parts, f"key {shown} must be text (put it in quotes)",
                     line=key.start_mark.line + 1)
            usable = False
            continue
        if key.value in seen:
            file.add((*parts, key.value), "duplicate key", line=key.start_mark.line + 1)
        seen.add(key.value)
        file.lines.setdefault((*parts, key.value), key.start_mark.line + 1)
        usable &= _map_lines(file, value, (*parts, key.value), walk)
    return usable
