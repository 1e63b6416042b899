"""What the services' offline commands (`nurture-scoring backtest` / `score`,
`nurture-orchestrator simulate`) share: reading their JSON-lines input."""

from __future__ import annotations

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
