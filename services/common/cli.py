"""What the services' offline commands (`nurture-scoring backtest` / `score`,
`nurture-orchestrator simulate`) share: reading their JSON-lines input."""

from __future__ import annotations

import os
import sys
from typing import IO


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
