"""A supervisor process under test (`make run`'s deploy/local/run.py, or its `supervise`) with
its output collected line by line as it comes, and deadline-bound waits on those lines."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from tests.support import ROOT

STARTED = re.compile(r"\[run\] started (\S+) \(pid (\d+)\)")


class RunProcess:
    """`argv` as a child of the test, stdout + stderr read by a thread into `lines`."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, errors="replace")
        self.lines: list[tuple[float, str]] = []  # (monotonic time received, line)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def output(self) -> list[str]:
        with self._lock:
            return [line for _, line in self.lines]

    def received(self, pattern: str) -> float:
        """When the first line matching `pattern` arrived."""
        with self._lock:
            return next(t for t, line in self.lines if re.search(pattern, line))

    def wait_for(self, what: str, check: Callable[[list[str]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.output()):
                return
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        tail = "\n".join(self.output()[-60:])
        raise AssertionError(f"no {what} within {timeout}s; last lines:\n{tail}")

    def wait_line(self, pattern: str, timeout: float, after: int = 0) -> re.Match[str]:
        """The first line from index `after` on that matches `pattern` (a regex)."""
        found: list[re.Match[str]] = []

        def check(lines: list[str]) -> bool:
            found[:] = [m for line in lines[after:] if (m := re.search(pattern, line))][:1]
            return bool(found)

        self.wait_for(repr(pattern), check, timeout)
        return found[0]

    def pids(self, name: str) -> list[int]:
        """Every pid the supervisor said it started `name` with, oldest first."""
        return [int(m[2]) for line in self.output()
                if (m := STARTED.fullmatch(line)) and m[1] == name]

    def kill_all(self) -> None:
        """Clean-up: the supervisor and every child it said it started."""
        for line in self.output():
            if m := STARTED.fullmatch(line):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(m[2]), signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

