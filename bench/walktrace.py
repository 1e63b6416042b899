"""Run a module with every call into the project's code recorded (bench/walk.py starts each
service under it):

    python -m bench.walktrace OUT.jsonl -m services.orchestrator serve --migrate

A profile function (`sys.setprofile`, and `threading.setprofile` for threads started later)
sees every call; it keeps the calls whose code lives under the repository's `services/` or
`schemas/` and that start a frame (a coroutine or generator resumed after an await or yield is
not a new call). Each kept call is one row:

    [epoch seconds, thread id, task, callee module, callee qualname,
     caller module, caller qualname, project modules on the stack (outermost first), kind]

where the caller is the nearest project frame below the callee (null for a root entry: a call
from the event loop, a library or another task), `task` is the asyncio task's name (null
outside a task) and `kind` is "g" for a generator's first step (a generator expression or
function iterated by whoever holds it), "c" for a coroutine's, "f" for a function. The stack
is a frame's `f_back` chain, cut where the event loop runs a callback (asyncio's Handle._run):
one task's await chain, not the frames the loop itself runs in (`asyncio.run` in a service's
main), so a hand-off to another task (an event, a queue) shows as a root entry there.

Rows are buffered in memory and appended to OUT as JSON lines by a thread every FLUSH_SECONDS,
and at exit; the thread starts before the profile is installed, so it is not recorded."""

from __future__ import annotations

import asyncio
import atexit
import dis
import json
import runpy
import sys
import threading
import time
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TREES = ("services", "schemas")
FLUSH_SECONDS = 0.25
_GENERATOR = 0x20 | 0x200  # CO_GENERATOR, CO_ASYNC_GENERATOR
_COROUTINE = 0x80 | 0x100  # CO_COROUTINE, CO_ITERABLE_COROUTINE
_RESUME = dis.opmap["RESUME"]

Row = list[Any]
Info = tuple[str, str, int, str]  # module, qualname, first RESUME offset or -1, kind


class Recorder:
    """The profile function and its buffer."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: list[Row] = []
        self.lock = threading.Lock()
        # id(code) -> (code, info): info for project code, else None. Keyed by id (a code
        # object's hash reads its whole body); the code is kept so its id is never reused.
        self.codes: dict[int, tuple[CodeType, Info | None]] = {}
        self.stacks: dict[tuple[str, ...], tuple[str, ...]] = {}  # interned stack tuples
        self.loop_runs: set[int] = set()  # id(code) of asyncio's Handle._run: a task's floor
        self.prefixes = tuple(str(ROOT / tree) + "/" for tree in TREES)

    def info(self, code: CodeType) -> Info | None:
        known = self.codes.get(id(code))
        if known is not None:
            return known[1]
        info = self.classify(code)
        self.codes[id(code)] = (code, info)
        return info

    def classify(self, code: CodeType) -> Info | None:
        path = code.co_filename
        if not path.startswith(self.prefixes):
            if code.co_qualname == "Handle._run" and path.endswith("asyncio/events.py"):
                self.loop_runs.add(id(code))
            return None
        dotted = path[len(str(ROOT)) + 1:].removesuffix(".py").replace("/", ".")
        module = dotted.removesuffix(".__init__")
        start, kind = -1, "f"
        if code.co_flags & (_GENERATOR | _COROUTINE):
            raw = code.co_code
            start = next((i for i in range(0, len(raw), 2) if raw[i] == _RESUME), -1)
            kind = "g" if code.co_flags & _GENERATOR else "c"
        return sys.intern(module), sys.intern(code.co_qualname), start, kind

    def profile(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        info = self.info(frame.f_code)
        if info is None:
            return
        if info[2] >= 0 and frame.f_lasti > info[2]:
            return  # a coroutine or generator resumed, not a new call
        self.record(frame, info)

    def record(self, frame: FrameType, callee: Info) -> None:
        caller: Info | None = None
        stack: list[str] = []
        back = frame.f_back
        while back is not None:
            code = back.f_code
            info = self.info(code)
            if id(code) in self.loop_runs:
                break
            if info is not None:
                if caller is None:
                    caller = info
                stack.append(info[0])
            back = back.f_back
        stack.reverse()
        key = tuple(stack)
        interned = self.stacks.setdefault(key, key)
        self.rows.append([time.time(), threading.get_ident(), _task_name(), callee[0],
                          callee[1], caller[0] if caller else None,
                          caller[1] if caller else None, interned, callee[3]])

    def flush(self) -> None:
        with self.lock:
            n = len(self.rows)
            if not n:
                return
            chunk = self.rows[:n]
            del self.rows[:n]
            with self.out.open("a") as out:
                out.writelines(json.dumps(row) + "\n" for row in chunk)

    def flush_every(self, seconds: float) -> None:
        while True:
            time.sleep(seconds)  # the flush period; nothing waits on it
            self.flush()


def _task_name() -> str | None:
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    task = asyncio.current_task(loop)
    return None if task is None else f"{task.get_name()}@{id(task):x}"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "-m" or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    out, module, args = Path(argv[0]), argv[2], argv[3:]
    out.parent.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(out)
    threading.Thread(target=recorder.flush_every, args=(FLUSH_SECONDS,), daemon=True,
                     name="walktrace-flush").start()
    atexit.register(recorder.flush)
    sys.argv = [module, *args]
    threading.setprofile(recorder.profile)
    sys.setprofile(recorder.profile)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.setprofile(None)
        recorder.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
