"""A short endurance run (deploy/soak, `--small`) inside the suite: the whole stack as separate
processes on its own broker and database for two minutes, kill -9 of dispatch and of the
orchestrator, retention of 30 s. It must pass (nothing lost or duplicated, lag back after each
fault and zero at the end, pruned tables and service memory levelling off), leave its series
and charts, and show the pruning at work. `make soak` is the half-hour run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.soak.__main__ import main
from deploy.soak.charts import CHARTS
from deploy.soak.measures import went_down
from deploy.soak.report import PRUNED, series

SERVICES = {"ingest", "scoring-1", "scoring-2", "orchestrator", "dispatch"}
GROUPS = {"nurture-scoring", "nurture-orchestrator", "nurture-dispatch"}


def test_a_short_soak_passes_and_shows_pruning_at_work(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    code = main(["--small", "--out", str(out)])
    figures: dict[str, Any] = json.loads((out / "result.json").read_text())
    assert code == 0 and figures["passed"], figures["problems"]
    counts = figures["counts"]
    assert counts["events_accepted"] == counts["events_scored"] == counts["events_processed"] \
        == counts["events_sent"] >= 60 * 3
    assert counts["messages_received"] == counts["messages_expected"]
    assert counts["messages_lost"] == counts["duplicates"] == 0
    assert [f["fault"] for f in figures["faults"]] == ["kill-dispatch", "kill-orchestrator"]
    assert all(f["lag_recovery_seconds"] is not None for f in figures["faults"])
    assert figures["final_lag"] and not any(figures["final_lag"].values())

    samples = [json.loads(line) for line in (out / "series.jsonl").read_text().splitlines()]
    assert len(samples) >= 30  # a sample every 2 s over two minutes, and the drain
    assert SERVICES | {"kafka", "postgres"} <= set(series(samples, "rss"))
    rows = series(samples, "rows")
    assert set(PRUNED) <= set(rows)
    assert {g for s in samples for g in (s["lag"] or {})} >= GROUPS
    assert any(s["latency_ms"]["count"] for s in samples)
    assert all((out / name).stat().st_size > 0 for name in CHARTS)

    # the retention (NURTURE_*_RETENTION_DAYS, 30 s here) really prunes: the dedupe rows of
    # both services fell at some point while the load ran
    load = [s for s in samples if s["phase"] == "load"]
    for table in ("nurture_dispatch.deliveries", "nurture.processed_events"):
        assert went_down(series(load, "rows")[table]), (table, series(load, "rows")[table])
