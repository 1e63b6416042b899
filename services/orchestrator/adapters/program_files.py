"""Program files and the contact policy file (config as code): YAML in, frozen domain objects out.

`load_programs(paths)` reads every program file (a directory means its `*.yaml` / `*.yml` files)
with `services.common.config.files`, which validates each against
`schemas/config/program.schema.json`; `program_build` checks what a schema cannot and builds the
`Program`s; this module adds the checks that need every file (program ids used twice, `enroll`
steps naming a program no file defines). `load_policy(path)` does the same for the contact
policy (`schemas/config/contact-policy.schema.json`). Every problem of every file is collected
with file, line, path and reason, and one error lists them all, so one start-up attempt (or one
`nurture-orchestrator check`) shows everything to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

import schemas
from schemas.formats import is_iana_timezone
from services.common.config.durations import parse_duration
from services.common.config.files import (
    ROOT,
    ConfigFile,
    ConfigFileError,
    ConfigFiles,
    ConfigProblem,
    read_config_files,
)
from services.orchestrator.adapters.program_build import ProgramBuilder, did_you_mean
from services.orchestrator.domain.policy import Cap, ContactPolicy, QuietHours
from services.orchestrator.domain.program import Program

SCHEMA_PATH = Path(schemas.__file__).parent / "config" / "program.schema.json"
POLICY_SCHEMA_PATH = Path(schemas.__file__).parent / "config" / "contact-policy.schema.json"
_PROGRAM_KIND, _POLICY_KIND = "program", "contact policy"  # "2 problems in program files:"

_PATTERNS = {  # schema pattern -> the problem of a value that does not match it
    "^[a-z][a-z0-9_-]{0,63}$":
        "must be a lowercase letter and at most 63 more lowercase letters, digits, '_' or '-'",
    "^(never|always|[1-9][0-9]*(m|h|d|w))$":
        "must be never, always or a duration: a positive whole number and a unit m, h, d or w "
        "(e.g. 30d)",
    "^(none|[1-9][0-9]*(m|h|d|w))$":
        "must be none or a duration: a positive whole number and a unit m, h, d or w (e.g. 1d)",
    "^-?[1-9][0-9]*(m|h|d|w)$":
        "must be a duration, with a minus for before the date (e.g. -90d or 7d)",
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "must be a time of day from 00:00 to 23:59 (HH:MM)",
}


class ProgramFileError(ConfigFileError):
    """Program files are invalid; `problems` holds every problem found, in file order."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        super().__init__(problems, kind=_PROGRAM_KIND)


class PolicyFileError(ConfigFileError):
    """The contact policy file is invalid; `problems` holds every problem found."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        super().__init__(problems, kind=_POLICY_KIND)


def load_programs(paths: Sequence[str | Path]) -> list[Program]:
    """Load the programs in `paths` (files, or directories of `*.yaml` / `*.yml`), in file order.

    Raises ProgramFileError listing every problem of every file, including program ids used
    twice and `enroll` steps naming a program that no file defines.
    """
    files = read_config_files(paths, schema=SCHEMA_PATH, kind=_PROGRAM_KIND,
                              pattern_messages=_PATTERNS)
    programs: list[Program] = []
    builders: list[ProgramBuilder] = []
    defined = _defined_ids(files)
    for file in files:
        builder = ProgramBuilder(file)
        program = builder.program(file.data)
        first = defined[file.data["id"]]
        if first is not file:
            file.add(("id",), f"duplicate program id '{file.data['id']}' (also in "
                     f"{first.file}:{first.line_of(('id',))})")
        elif program is not None:
            programs.append(program)
        builders.append(builder)
    for builder in builders:
        _check_enrolls(builder, defined)
    if problems := files.problems:
        raise ProgramFileError(problems)
    return programs


def _defined_ids(files: ConfigFiles) -> dict[str, ConfigFile]:
    """Program id -> the first file defining it. Files the schema refused count too, so that
    an `enroll` of their program is not reported as well."""
    defined: dict[str, ConfigFile] = {}
    for file in files.files:
        if isinstance(file.data, Mapping) and isinstance(file.data.get("id"), str):
            defined.setdefault(file.data["id"], file)
    return defined


def _check_enrolls(builder: ProgramBuilder, defined: Mapping[str, ConfigFile]) -> None:
    own = builder.file.data["id"]
    for at, target in builder.enrolls:
        if target == own:
            builder.file.add(at, "a program cannot enroll a lead in itself (use next to loop)")
        elif target not in defined:
            builder.file.add(at, f"no program '{target}' in the program files"
                             + did_you_mean(target, defined))


# -- the contact policy ----------------------------------------------------------------------


def load_policy(path: str | Path) -> ContactPolicy:
    """Load the contact policy file at `path`.

    Raises PolicyFileError listing every problem (schema, unknown time zone, ...).
    """
    given = Path(path)
    if given.is_dir():
        raise PolicyFileError([ConfigProblem(str(given), None, ROOT,
                                             "is a directory: expected the contact policy file")])
    files = read_config_files([given], schema=POLICY_SCHEMA_PATH, kind=_POLICY_KIND,
                              pattern_messages=_PATTERNS)
    policies = [_policy(file) for file in files]
    if problems := files.problems:
        raise PolicyFileError(problems)
    (policy,) = policies
    return policy


def _policy(file: ConfigFile) -> ContactPolicy:
    data: Mapping[str, Any] = file.data
    zone = data["default_timezone"]
    if not is_iana_timezone(zone):
        hint = did_you_mean(zone, available_timezones())
        file.add(("default_timezone",), "unknown time zone"
                 + (hint or " (an IANA name such as Europe/Berlin or UTC)"))
    quiet = None
    if data["quiet_hours"] is not None:
        quiet = QuietHours(_time(data["quiet_hours"]["start"]),
                           _time(data["quiet_hours"]["end"]))
        if quiet.start == quiet.end:
            file.add(("quiet_hours", "end"), "is the same as start: write quiet_hours: null "
                     "for no quiet hours")
    caps = tuple(Cap(cap["channel"], cap["max"], parse_duration(cap["per"]))
                 for cap in data["caps"])
    return ContactPolicy(caps=caps, quiet_hours=quiet, default_timezone=zone,
                         sms_requires_consent=data.get("sms_requires_consent", True))


def _time(text: str) -> time:
    hours, minutes = text.split(":")  # the schema pattern guarantees HH:MM
    return time(int(hours), int(minutes))
