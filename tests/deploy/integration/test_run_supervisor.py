"""The supervisor behind `make run` (deploy/local/run.py: `supervise`), run as its own process
against real child processes: it keeps relaying while a child leaves a line unfinished (what
faust's spinner does after "Worker ready"), never lets a child block on its output, reports an
exit at once (kill -9 included) and restarts with a back-off, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from tests.deploy.run_support import RunProcess
from tests.support import ROOT

SUPERVISE = """\
import json, os, sys
from deploy.local.run import supervise
codes = supervise(json.loads(sys.argv[1]), dict(os.environ))
print("codes " + json.dumps(codes), flush=True)
"""
TICKS = ("import os, sys, time\n"
         "for i in range(100000):\n"
         "    print(f'{sys.argv[1]} {os.getpid()} tick {i}', flush=True)\n"
         "    time.sleep(0.05)\n")
SPINNER = ("import os, sys, time\n"
           "sys.stdout.write('Worker ready\\n\\b\\x1b[?25h')\n"  # no newline after the spinner
           "sys.stdout.flush()\n"
           "time.sleep(0.5)\n" + TICKS.split("\n", 1)[1])
PROMPT = ("import sys, time\n"
          "sys.stdout.write('waiting for input: ')\n"
          "sys.stdout.flush()\n"
          "time.sleep(600)\n")
FLOOD_LINES = 12_000  # 12,000 lines of 100 bytes: over 1 MiB, 16 times a pipe's buffer
FLOOD = ("import sys\n"
         f"lines = [f'flood {{i:06d}} ' + 'x' * 86 + '\\n' for i in range({FLOOD_LINES})]\n"
         "sys.stdout.write(''.join(lines))\n"
         "sys.stdout.flush()\n")


def child(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


class Supervisor(RunProcess):
    """`supervise(commands)` in a process of its own."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        super().__init__([sys.executable, "-c", SUPERVISE, json.dumps(commands)],
                         {**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.kill_all()


def test_an_unfinished_line_neither_stops_the_relay_nor_blocks_the_others(
        supervisors: list[Supervisor]) -> None:
    sup = Supervisor({"scoring": child(SPINNER, "scoring"), "prompt": child(PROMPT),
                      "flood": child(FLOOD)})
    supervisors.append(sup)
    # all of the flood arrives, in order, before its exit is reported: it was never left
    # blocked on a full pipe behind the spinner's or the prompt's unfinished line. (Joined: a
    # line the flood is descheduled in the middle of, on a busy machine, may come in two.)
    sup.wait_line(r"^\[run\] flood exited with code 0", timeout=30)
    lines = sup.output()
    exited = lines.index(next(line for line in lines if line.startswith("[run] flood exited")))
    flood = [line[15:] for line in lines[:exited] if line.startswith("       flood | ")]
    assert "".join(flood) == "".join(f"flood {i:06d} {'x' * 86}" for i in range(FLOOD_LINES))
    assert len(flood) >= FLOOD_LINES
    # the scoring child keeps being relayed after the spinner's bytes, which are not shown
    sup.wait_line(r"^     scoring \| scoring \d+ tick 5$", timeout=20)
    assert "     scoring | Worker ready" in sup.output()
    # a line that never gets its newline is shown once the child pauses
    sup.wait_line(r"^      prompt \| waiting for input:", timeout=10)
    raw = "\n".join(sup.output())
    assert "\x1b" not in raw
    assert "\b" not in raw


def test_a_service_killed_with_sigkill_is_reported_at_once_and_restarted(
        supervisors: list[Supervisor]) -> None:
    sup = Supervisor({"victim": child(TICKS, "victim"), "bystander": child(TICKS, "bystander")})
    supervisors.append(sup)
    first = int(sup.wait_line(r"^\[run\] started victim \(pid (\d+)\)", timeout=10)[1])
    sup.wait_line(rf"^      victim \| victim {first} tick 2$", timeout=10)
    mark = len(sup.output())
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    sup.wait_line(r"^\[run\] victim was killed by SIGKILL after [\d.]+s; restarting it in 1s$",
                  timeout=5, after=mark)
    reported = sup.received("victim was killed by SIGKILL")
    assert reported - killed < 2, "the exit was noticed late"
    second = int(sup.wait_line(r"^\[run\] started victim \(pid (\d+)\)", timeout=10,
                               after=mark)[1])
    assert second != first
    # the new process is relayed, and so is its sibling, all along
    sup.wait_line(rf"^      victim \| victim {second} tick 3$", timeout=10, after=mark)
    sup.wait_line(r"^   bystander \| bystander \d+ tick \d+$", timeout=5, after=mark)
    assert sup.pids("bystander") == sup.pids("bystander")[:1], "the bystander was restarted"


def test_a_crash_loop_backs_off_doubling(supervisors: list[Supervisor]) -> None:
    sup = Supervisor({"crash": child("import sys; print('failing', flush=True); sys.exit(3)")})
    supervisors.append(sup)
    sup.wait_line(r"^\[run\] crash exited with code 3 after [\d.]+s; restarting it in 4s$",
                  timeout=20)
    says = [(t, line) for t, line in sup.lines if line.startswith("[run] ")]
    exits = [(t, line) for t, line in says if "crash exited with code 3" in line]
    starts = [t for t, line in says if line.startswith("[run] started crash")]
    assert [line.rsplit(" ", 1)[1] for _, line in exits] == ["1s", "2s", "4s"]
    assert len(starts) == 3
    # each restart waited the back-off it announced
    for (exited, _), restarted, delay in zip(exits, starts[1:], (1, 2), strict=False):
        assert restarted - exited >= delay - 0.5
    assert sup.output().count("       crash | failing") == 3


def test_sigterm_stops_every_service_without_restarts(supervisors: list[Supervisor]) -> None:
    graceful = ("import signal, sys, time\n"
                "def bye(*_):\n"
                "    print('got SIGTERM, bye', flush=True)\n"
                "    sys.exit(0)\n"
                "signal.signal(signal.SIGTERM, bye)\n"
                "print('ready', flush=True)\n"
                "time.sleep(600)\n")
    sup = Supervisor({"graceful": child(graceful), "plain": child(TICKS, "plain")})
    supervisors.append(sup)
    sup.wait_line(r"^    graceful \| ready$", timeout=10)
    sup.wait_line(r"^       plain \| plain \d+ tick 1$", timeout=10)
    pids = sup.pids("graceful") + sup.pids("plain")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(20) == 0
    sup.wait_line(r"^codes ", timeout=5)
    lines = sup.output()
    assert "[run] stopping services ..." in lines
    assert "    graceful | got SIGTERM, bye" in lines
    assert json.loads(lines[-1].removeprefix("codes ")) == {"graceful": 0, "plain": -15}
    assert not [line for line in lines if "restarting" in line]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
