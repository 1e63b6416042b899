"""A small counted fault run (deploy/chaos) inside the suite: the whole stack as separate
processes on its own broker and database, a few faults, and the run must pass: every accepted
event scored and processed, exactly one delivery per lead and step, nothing dead-lettered, every
fault recovered. `make chaos` is the full-size run."""

from __future__ import annotations

import json
import time
from pathlib import Path

from deploy.chaos.scenario import QUICK_TIMINGS, Options, execute
from deploy.chaos.tally import table

FAULTS = ("kill-scoring", "kill-dispatch", "http-timeout")


async def test_a_small_fault_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    began = time.monotonic()

    def log(line: str) -> None:
        lines.append(f"{time.monotonic() - began:6.1f} {line}")
    opts = Options(out=tmp_path / "chaos", rate=1.0, min_leads=8, hold=3.0, gap=2.0, tick=4.0,
                   drain_timeout=240.0, faults=FAULTS, timings=QUICK_TIMINGS, log=log)
    figures = await execute(opts)
    (tmp_path / "result.json").write_text(json.dumps(figures, indent=2))
    assert figures["passed"], table(figures) + "\n" + "\n".join(lines)
    leads = figures["events_sent"] // 3
    assert figures["events_accepted"] == figures["events_sent"] >= 8 * 3
    assert figures["messages_received"] == figures["messages_expected"] == leads * 3
    assert figures["messages"]["email"]["received"] == leads * 2
    assert figures["messages"]["webhook"]["received"] == leads
    assert figures["duplicates"] == figures["messages_lost"] == 0
    assert [f["fault"] for f in figures["faults"]] == list(FAULTS)
