"""`python -m deploy.demo` with a tiny population through the real services (real Kafka,
PostgreSQL, SMTP): the report it writes agrees with what its SMTP server received and with
what the leads did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_tiny_demo_report_is_consistent(kafka_bootstrap: str, database_url: str,
                                        tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "deploy.demo", "--leads", "30", "--days", "20",
                           "--seed", "3", "--out", str(out), "--settle-timeout", "300"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    checks = rep["checks"]

    mails = checks["emails_received_by_smtp"]
    assert mails > 0
    assert checks["emails_sent_by_dispatch_metric"] == mails
    assert checks["emails_sent_in_orchestrator_db"] == mails
    assert sum(p["sent"] for p in rep["programs"].values()) == mails
    assert checks["unknown_recipients"] == 0
    assert checks["link_errors"] == {}
    # every open and click the leads made reached scoring through ingest's tracking endpoints
    assert checks["opens_followed"] == checks["opens_scored"] > 0
    assert checks["clicks_followed"] == checks["clicks_scored"]
    assert sum(p["opened"] for p in rep["programs"].values()) == checks["opens_followed"]
    # ingest stamps them with the simulated clock: none is older than the lead's other events
    assert checks["opens_clicks_scored_late"] == 0

    funnel = rep["funnel"]
    assert sum(funnel["leads_by_stage"].values()) == 30  # all arrive in the first 2/3
    assert sum(g["leads"] for g in rep["nurtured"].values()) == 30
    assert funnel["reached"]["mql"] > 0
    assert "| welcome |" in (out / "report.md").read_text()
    assert (out / "funnel.png").read_bytes()[:4] == b"\x89PNG"
    assert "[demo] day  20.0/20" in done.stdout
