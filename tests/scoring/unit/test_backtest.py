"""The backtest replays events through the engine and reports what the model would have done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from services.scoring.domain.backtest import replay
from services.scoring.domain.model import EngagementRule, FitRule, ScoringModel

DAY = 86400.0
T0 = 1_790_000_000.0
MODEL = ScoringModel(
    id="m", version=2, half_life_days=30, thresholds={"mql": 50, "sql": 100},
    fit=(FitRule("vp", 10, lambda p: p.get("seniority") == "vp"),),
    engagement=(EngagementRule("demo", frozenset({"web.form_submitted"}), 50),
                EngagementRule("download", frozenset({"web.content_downloaded"}), 10)))


def ev(lead: str, n: int, etype: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": f"{lead}-{n}", "source": "s", "type": etype, "subject": lead,
            "data": data or {}}


def test_report_counts_crossings_distribution_and_rules() -> None:
    events = [
        (ev("a", 1, "crm.lead_upserted", {"seniority": "vp"}), T0),
        (ev("a", 2, "web.form_submitted"), T0 + DAY),          # a: 60 -> mql on day 1
        (ev("a", 2, "web.form_submitted"), T0 + DAY),          # duplicate
        (ev("b", 1, "web.content_downloaded"), T0),            # b: 10
        (ev("c", 1, "web.form_submitted"), T0),                # c: 50 -> mql
        (ev("c", 2, "web.form_submitted"), T0),                # c: 100 -> sql
    ]
    report = replay(events, [MODEL])
    assert (report["events"], report["leads"], report["duplicates"]) == (6, 3, 1)
    (model,) = report["models"]
    assert model["distribution"]["min"] == 10.0
    assert model["distribution"]["max"] == 100.0
    assert model["bands"] == {"below mql": 1, "mql": 1, "sql": 1}
    mql, sql = model["thresholds"]
    assert (mql["threshold"], mql["leads_crossed_up"], mql["crossings_up"]) == ("mql", 2, 2)
    assert mql["median_days_to_first_crossing"] == 0.5  # a after 1 day, c at once
    assert (sql["leads_crossed_up"], sql["crossings_down"]) == (1, 0)
    rules = {r["rule"]: (r["points"], r["leads"]) for r in model["top_rules"]}
    assert rules == {"demo": (150.0, 2), "download": (10.0, 1), "vp": (10.0, 1)}


def test_cli_backtest_reads_jsonl_skips_bad_lines_and_prints_json(tmp_path: Path) -> None:
    model = tmp_path / "m.yaml"
    model.write_text("id: m\nversion: 1\nhalf_life: 30d\nthresholds: {mql: 10}\n"
                     "engagement:\n  - id: dl\n    on: web.content_downloaded\n    points: 10\n")
    lines = [orjson.dumps(ev("a", 1, "web.content_downloaded") | {"time": "2026-11-01T00:00:00Z"}),
             b"garbage",
             orjson.dumps({"event": ev("b", 1, "web.content_downloaded")
                           | {"time": "2026-11-02T00:00:00Z"}, "score": {}})]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "services.scoring", "backtest", "--model",
                           str(model), "--events", str(events), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["events"], report["leads"], report["bad_lines"]) == (2, 2, 1)
    assert report["models"][0]["thresholds"][0]["leads_crossed_up"] == 2
    text = subprocess.run([sys.executable, "-m", "services.scoring", "backtest", "--model",
                           str(model), "--events", str(events)],
                          capture_output=True, text=True, timeout=60, check=False).stdout
    assert "\n  line 2: " in text
    assert "== model m v1" in text


def test_cli_check_reports_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: m\nversion: 1\nhalf_life: 30d\nthresholds: {mql: 10}\n"
                   "engagement:\n  - id: dl\n    on: web.content_downloaded\n    point: 10\n")
    proc = subprocess.run([sys.executable, "-m", "services.scoring", "check", str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"{bad}:8: engagement[0].point" in proc.stderr
