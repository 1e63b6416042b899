"""What the services' offline and operator commands (`nurture-scoring backtest` / `score`,
`nurture-orchestrator simulate`, `nurture-ops ...`) share: reading their JSON-lines input, and
ending quietly when whoever reads their output stops early (`| head`)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import IO, ParamSpec

P = ParamSpec("P")


def open_input(path: str, command: str) -> IO[bytes] | None:
    """`path` opened for reading bytes (`-`: stdin), or None after telling stderr
    `<command>: cannot read <path>: <why>`."""
    try:
        return sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        print(f"{command}: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


def reader_gone() -> int:
    """After a BrokenPipeError on stdout (the reader stopped early, as `| head` does): stdout
    goes to /dev/null, so the interpreter's last flush does not fail again; exit code 0."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def ends_quietly(main: Callable[P, int]) -> Callable[P, int]:
    """A command's `main` whose reader may stop early: a BrokenPipeError on stdout ends it
    with `reader_gone` (exit code 0, no traceback)."""

    @functools.wraps(main)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            return reader_gone()
    return run
