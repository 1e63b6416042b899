"""The supervisor behind `make run`: runs services as child processes and relays their output,
each line prefixed with the service's name, without ever letting a child block on its output.

Output is read in chunks from non-blocking pipes, always drained; terminal control sequences
(the scoring worker's start-up spinner) are stripped, and a line a service leaves without its
newline is shown once the service pauses. A service that exits, for whatever reason, is
reported at once with its exit code or signal and restarted after a back-off (1 s, doubling up
to 30 s; back to 1 s once it has stayed up a minute). `request_stop` ends them all, without
restarts."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

COLORS = ("36", "35", "33", "32", "34")
MAX_LINE = 16 * 1024  # bytes; a longer line is shown in pieces
CHUNK = 64 * 1024  # bytes read from a child at a time
TICK = 0.1  # seconds between looks at the children
IDLE = 1.0  # seconds of silence after which an unfinished line is shown

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \) and two-byte ESC sequences
_ESCAPE = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -~]?")
_UNFINISHED_ESCAPE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 (but tab), DEL and C1


def clean(raw: bytes) -> str:
    """A line of a child's output as plain text: escape sequences and control characters (the
    spinner's backspaces and cursor codes, carriage returns) removed, invalid UTF-8 replaced."""
    return _CONTROL.sub("", _ESCAPE.sub(b"", raw).decode(errors="replace"))


def _cut(raw: bytes, limit: int) -> tuple[list[bytes], bytes]:
    """`limit`-byte pieces of `raw` and the 0..limit bytes left (never 0 if `raw` is not)."""
    n = max(0, (len(raw) - 1) // limit)
    return [raw[i * limit:(i + 1) * limit] for i in range(n)], raw[n * limit:]


def split_lines(pending: bytes, chunk: bytes, *,
                limit: int = MAX_LINE) -> tuple[list[str], bytes]:
    """The complete lines of `pending + chunk`, cleaned, and the unfinished rest to keep. A line
    over `limit` bytes comes out in `limit`-byte pieces, so the rest never exceeds `limit`."""
    *complete, rest = (pending + chunk).split(b"\n")
    lines: list[str] = []
    for raw in complete:
        pieces, last = _cut(raw, limit)
        lines += [clean(piece) for piece in (*pieces, last)]
    pieces, rest = _cut(rest, limit)
    return lines + [clean(piece) for piece in pieces], rest


def flush_partial(pending: bytes) -> tuple[str, bytes]:
    """An unfinished line to show now: its text, and the bytes to keep (an escape sequence cut
    off at the end, so that its second half is not shown as text)."""
    unfinished = _UNFINISHED_ESCAPE.search(pending)
    keep = pending[unfinished.start():] if unfinished else b""
    return clean(pending[:len(pending) - len(keep)]), keep


def describe_exit(returncode: int) -> str:
    """'exited with code 3', or 'was killed by SIGKILL' for a negative (signal) return code."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a service that exited."""

    first: float = 1.0
    most: float = 30.0
    stable: float = 60.0  # seconds up after which an exit counts as a first one again

    def delay(self, previous: float | None, uptime: float) -> float:
        """The delay for this restart; `previous` is the last restart's delay (None if none)."""
        if previous is None or uptime >= self.stable:
            return self.first
        return min(previous * 2, self.most)


@dataclass
class _Stream:
    """The read end of one child's stdout + stderr pipe, and its unfinished line."""

    fd: int
    prefix: str
    pending: bytes = b""
    last_read: float = 0.0
    closed: bool = False


@dataclass
class _Service:
    name: str
    argv: list[str]
    prefix: str
    proc: subprocess.Popen[bytes] | None = None
    stream: _Stream | None = None
    started: float = 0.0
    returncode: int | None = None  # of its last exit
    delay: float | None = None  # the last restart's back-off
    restart_at: float | None = None


@dataclass
class Supervisor:
    """Runs `commands` (name -> argv) as children and relays their output, line by line and
    prefixed with the name, to `out`; never blocks on a child, restarts one that exits. `run`
    returns (with each service's exit code) after `request_stop` and the children stopped."""

    commands: dict[str, list[str]]
    env: dict[str, str]
    cwd: Path
    out: TextIO
    color: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    grace: float = 30.0  # seconds between SIGTERM and SIGKILL when stopping

    def __post_init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._stop = False
        self._services = [_Service(name, argv, self._prefix(name, i))
                          for i, (name, argv) in enumerate(self.commands.items())]

    def _prefix(self, name: str, i: int) -> str:
        if self.color:
            return f"\033[{COLORS[i % len(COLORS)]}m{name:>12} |\033[0m"
        return f"{name:>12} |"

    def request_stop(self) -> None:
        """Stop the children and return from `run`; safe to call from a signal handler."""
        self._stop = True

    def run(self) -> dict[str, int | None]:
        for svc in self._services:
            self._start(svc, time.monotonic())
        while not self._stop:
            self._pump(TICK)
            now = time.monotonic()
            for svc in self._services:
                if svc.proc is not None and svc.proc.poll() is not None:
                    self._exited(svc, now)
                elif svc.restart_at is not None and now >= svc.restart_at:
                    self._start(svc, now)
        return self._shutdown()

    def _say(self, message: str) -> None:
        self.out.write(f"[run] {message}\n")
        self.out.flush()

    def _start(self, svc: _Service, now: float) -> None:
        if self._stop:
            return
        read, write = os.pipe()
        try:
            svc.proc = subprocess.Popen(svc.argv, env=self.env, cwd=self.cwd, stdout=write,
                                        stderr=write, stdin=subprocess.DEVNULL)
        except OSError as exc:
            os.close(read)
            svc.proc = None
            self._restart_later(svc, now, f"could not start ({exc})", uptime=0.0)
            return
        finally:
            os.close(write)
        os.set_blocking(read, False)
        svc.stream = _Stream(read, svc.prefix, last_read=now)
        self._sel.register(read, selectors.EVENT_READ, svc.stream)
        svc.started, svc.restart_at = now, None
        self._say(f"started {svc.name} (pid {svc.proc.pid})")

    def _exited(self, svc: _Service, now: float) -> None:
        assert svc.proc is not None
        code = svc.returncode = svc.proc.returncode
        svc.proc = None
        if svc.stream is not None:
            self._drain(svc.stream)  # its last words before the news of its exit
        uptime = now - svc.started
        self._restart_later(svc, now, f"{describe_exit(code)} after {uptime:.1f}s", uptime=uptime)

    def _restart_later(self, svc: _Service, now: float, what: str, *, uptime: float) -> None:
        svc.delay = self.backoff.delay(svc.delay, uptime)
        svc.restart_at = now + svc.delay
        self._say(f"{svc.name} {what}; restarting it in {svc.delay:g}s")

    def _pump(self, timeout: float) -> None:
        """Read what the children wrote (waiting up to `timeout`), show unfinished lines of
        children that went quiet."""
        for key, _ in self._sel.select(timeout):
            self._read(key.data)
        now = time.monotonic()
        for key in list(self._sel.get_map().values()):
            stream: _Stream = key.data
            if stream.pending and now - stream.last_read >= IDLE:
                text, stream.pending = flush_partial(stream.pending)
                self._relay(stream, [text] if text.strip() else [])

    def _read(self, stream: _Stream) -> bool:
        """One read; False at the end of the stream or when nothing is there right now."""
        if stream.closed:
            return False
        try:
            chunk = os.read(stream.fd, CHUNK)
        except BlockingIOError:
            return False
        if not chunk:  # every writer is gone: the child and anything it started
            self._close(stream)
            rest = clean(stream.pending)
            self._relay(stream, [rest] if rest.strip() else [])
            return False
        lines, stream.pending = split_lines(stream.pending, chunk)
        stream.last_read = time.monotonic()
        self._relay(stream, lines)
        return True

    def _close(self, stream: _Stream) -> None:
        self._sel.unregister(stream.fd)
        os.close(stream.fd)
        stream.closed = True

    def _drain(self, stream: _Stream) -> None:
        while self._read(stream):
            pass

    def _relay(self, stream: _Stream, lines: list[str]) -> None:
        if lines:
            self.out.write("".join(f"{stream.prefix} {line}\n" for line in lines))
            self.out.flush()

    def _shutdown(self) -> dict[str, int | None]:
        self._say("stopping services ...")
        running = {svc.name: svc.proc for svc in self._services if svc.proc is not None}
        for proc in running.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(proc.poll() is None for proc in running.values()):
            self._pump(TICK)
            if time.monotonic() > deadline:
                for proc in running.values():
                    proc.kill()
        for key in list(self._sel.get_map().values()):
            self._drain(key.data)
            if not key.data.closed:  # still held open by something a child started
                self._close(key.data)
        return {svc.name: running[svc.name].returncode if svc.name in running
                else svc.returncode for svc in self._services}
