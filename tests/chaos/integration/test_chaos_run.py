"""A small counted fault run (deploy/chaos) inside the suite: the whole stack as separate
processes on its own broker and database, a few faults, and the run must pass: every accepted
event scored and processed, every expected message received exactly once, nothing dead-lettered,
every fault recovered. `make chaos` is the full-size run."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.chaos.scenario import Options, execute
from deploy.chaos.tally import table

FAULTS = ("kill-scoring", "kill-dispatch", "smtp-4xx", "http-500")


async def test_a_small_fault_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    lines: list[str] = []
    opts = Options(out=tmp_path / "chaos", rate=1.0, min_leads=8, hold=3.0, gap=2.0, tick=4.0,
                   drain_timeout=240.0, faults=FAULTS, log=lines.append)
    figures = await execute(opts)
    (tmp_path / "result.json").write_text(json.dumps(figures, indent=2))
    assert figures["passed"], table(figures) + "\n" + "\n".join(lines)
    assert figures["events_accepted"] == figures["events_sent"] >= 8 * 3
    assert figures["messages_received"] == figures["messages_expected"] >= 8 * 3
    assert figures["duplicates"] == 0
    assert [f["fault"] for f in figures["faults"]] == list(FAULTS)
