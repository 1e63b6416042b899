"""The benchmark harness cannot rot: the committed doc matches the committed results, the report
and the helpers behave, and a tiny run of every benchmark against the real broker and database
produces well-formed results. No timing is asserted: benchmarks record, tests don't judge."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import report
from bench.core import ROOT, CpuMeter, compare, cpu_seconds, events, pct
from schemas import validate_event

COMPONENTS = ("ingest", "scoring", "backtest", "orchestrator", "dispatch", "e2e")


def test_committed_doc_matches_committed_results() -> None:
    assert report.main(["--check"]) == 0


def test_check_fails_when_the_doc_is_stale(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(report.DOC.read_text().replace("| measure |", "| edited |", 1))
    assert report.main(["--check", "--doc", str(doc)]) == 1
    assert report.main(["--doc", str(doc)]) == 0
    assert report.main(["--check", "--doc", str(doc)]) == 0


def test_percentiles_and_ratios() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (pct(values, 50), pct(values, 99), pct([], 99)) == (50.0, 99.0, 0.0)
    row = compare("x", 30, 100, target=0.35, unit="events/s", baseline_name="b")
    assert (row["ratio"], row["met"]) == (0.3, False)
    lower = compare("m", 30, 100, target=0.35, unit="MiB", baseline_name="b",
                    higher_is_better=False)
    assert lower["met"] is True


def burn(seconds: float) -> None:
    """Use `seconds` of this process's CPU (a CPU amount, not a wait)."""
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_cpu_seconds_counts_the_process_and_with_children_its_reaped_children() -> None:
    me = os.getpid()
    before, with_children = cpu_seconds(me), cpu_seconds(me, children=True)
    burn(0.3)
    assert cpu_seconds(me) - before >= 0.25
    child = "import time\nt = time.process_time() + 0.4\nwhile time.process_time() < t: pass"
    subprocess.run([sys.executable, "-c", child], check=True)  # reaped: in our cutime
    grown = cpu_seconds(me, children=True) - with_children
    assert grown - (cpu_seconds(me) - before) >= 0.35


def test_cpu_meter_gives_microseconds_per_event_per_process_and_in_total() -> None:
    meter = CpuMeter({"me": os.getpid()})
    before = meter.read()
    burn(0.2)
    per_event = CpuMeter.per_event_us(before, meter.read(), 1000)
    assert per_event["me"] >= 150 and per_event["total"] == per_event["me"]
    assert CpuMeter.per_event_us({"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.25}, 500) == {
        "a": 1000.0, "b": 500.0, "total": 1500.0}
    assert CpuMeter.per_event_us(before, before, 0) == {}


def test_synthetic_events_are_valid_cloudevents() -> None:
    items = events(500, 50, seed=1, hot_share=0.1)
    assert [validate_event(e) for e in items if validate_event(e)] == []
    assert {e["subject"] for e in items[:50]} == {f"lead-{i}" for i in range(50)}


def well_formed(row: dict[str, Any]) -> bool:
    keys = {"name", "unit", "real", "baseline", "ratio", "met", "higher_is_better"}
    return keys <= row.keys() and isinstance(row["real"], int | float)


@pytest.mark.integration
def test_quick_run_of_every_benchmark(kafka_bootstrap: str, database_url: str,
                                      tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    run = orjson.loads(out.read_bytes())["runs"]["current"]
    assert run["quick"] is True and run["machine"]["cpus"]
    assert set(run["components"]) == set(COMPONENTS)
    for name, comp in run["components"].items():
        assert "error" not in comp, (name, comp.get("error"))
        assert comp["comparisons"], name
        assert all(well_formed(row) for row in comp["comparisons"]), name
    assert run["components"]["orchestrator"]["comparisons"][0]["same_writes"] is True
    dispatch = run["components"]["dispatch"]["measured"]
    # every command was fed twice; each message reached its peer exactly once
    assert dispatch["email_received"] == dispatch["webhook_received"] == \
        dispatch["commands_each"]
    doc = tmp_path / "benchmarks.md"
    assert report.main(["--results", str(out), "--doc", str(doc)]) == 0
    assert "### 6. End to end" in doc.read_text()
