"""The program dry-run replays recorded events through the same decisions with simulated time."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.simulate import Simulation
from tests.orchestrator.unit.test_decide import PRICING, T0
from tests.support import scored_record

H, D = 3600, 86400


def ev(lead: str, n: int, etype: str, **data: object) -> dict[str, object]:
    return {"id": f"{lead}-{n}", "source": "rec", "type": etype, "subject": lead, "data": data}


def test_timers_fire_between_events_and_goals_exit() -> None:
    sim = Simulation(Decider([PRICING], ContactPolicy(caps=(), quiet_hours=None)))
    sim.feed(ev("a", 0, "crm.lead_upserted", email="a@x.io"), {}, T0)
    sim.feed(ev("a", 1, "web.page_viewed", path="/pricing"), {}, T0 + 1)
    sim.feed(ev("b", 0, "crm.lead_upserted", email="b@x.io"), {}, T0)
    sim.feed(ev("b", 1, "web.page_viewed", path="/pricing"), {}, T0 + 1)
    sim.feed(ev("b", 2, "web.form_submitted", form_id="f", form_type="demo_request"), {},
             T0 + 2 * H)
    sim.feed(ev("b", 2, "web.form_submitted", form_id="f", form_type="demo_request"), {},
             T0 + 2 * H)  # a duplicate
    sim.run_until(T0 + 30 * D)
    report = sim.report()
    pricing = report["programs"]["pricing"]
    assert pricing["enrolled"] == 2
    assert pricing["sent_by_step"] == {"email-1": 2, "case-study": 1}
    assert pricing["exits"] == {"goal": 1, "no click": 1}
    assert report["duplicates"] == 1
    assert report["leads_by_stage"] == {"lead": 2}


def test_cli_simulate_reports_held_messages(tmp_path: Path) -> None:
    program = tmp_path / "programs"
    program.mkdir()
    (program / "hello.yaml").write_text(
        "id: hello\nversion: 1\nname: Hello\ntrigger: {event: web.page_viewed}\n"
        "steps:\n  - {id: hi, send: {channel: email, template: hello}}\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("default_timezone: UTC\nquiet_hours: null\ncaps: []\n"
                      "sms_requires_consent: true\n")
    lines = [scored_record(ev("a", 1, "web.page_viewed", url="https://x.io/")
                           | {"time": "2026-11-01T10:00:00Z"}),
        orjson.dumps(ev("b", 1, "crm.lead_upserted", email="b@x.io")
                     | {"time": "2026-11-01T10:00:00Z"}),
        orjson.dumps(ev("b", 2, "web.page_viewed", url="https://x.io/")
                     | {"time": "2026-11-01T11:00:00Z"}),
        b"not json"]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines))
    proc = subprocess.run([sys.executable, "-m", "services.orchestrator", "simulate",
                           "--programs", str(program), "--policy", str(policy),
                           "--events", str(events), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    hello = report["programs"]["hello"]
    assert hello["sent_by_step"] == {"hi": 1}
    assert hello["held"] == {"dropped: no email address": 1}
    assert report["bad_lines"] == 1


ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "samples" / "events.jsonl"


def cli(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", *args, "--json", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_the_dry_run_scores_plain_events_as_the_scoring_backtest_does() -> None:
    """On the shipped sample: thresholds are crossed exactly as `nurture-scoring backtest`
    counts them, and the programs triggered by them enroll leads."""
    dry = cli("services.orchestrator", "simulate", "--events", str(SAMPLE))
    backtest = cli("services.scoring", "backtest", "--events", str(SAMPLE))
    assert dry["scoring_models"] == ["config/scoring"] and dry["bad_lines"] == 0
    assert dry["models_seen"] == ["b2b", "product-led"]
    expected = {f"{m['model']}/{t['threshold']}": {"crossings": t["crossings_up"],
                                                   "leads": t["leads_crossed_up"]}
                for m in backtest["models"] for t in m["thresholds"] if t["crossings_up"]}
    assert dry["crossed_up"] == expected
    accelerator = dry["programs"]["mql-accelerator"]  # trigger: threshold b2b/mql
    assert 0 < accelerator["enrolled"] <= expected["b2b/mql"]["leads"]
    assert all(why.startswith("b2b crossed mql on web.")
               for why in accelerator["entered_because"]), accelerator["entered_because"]
    assert sum(accelerator["entered_because"].values()) == accelerator["enrolled"]
    assert dry["programs"]["hot-lead-handoff"]["enrolled"] == expected["b2b/sql"]["leads"]
    lead, entries = next(iter(dry["entries"].items()))
    assert all(set(e) == {"program", "why", "at"} for e in entries), lead


def test_without_scoring_no_score_triggered_program_starts_and_the_report_says_so() -> None:
    dry = cli("services.orchestrator", "simulate", "--events", str(SAMPLE), "--no-scoring")
    assert dry["scoring_models"] is None and dry["crossed_up"] == {}
    assert dry["programs"]["mql-accelerator"]["enrolled"] == 0
    text = subprocess.run([sys.executable, "-m", "services.orchestrator", "simulate",
                           "--events", str(SAMPLE), "--no-scoring", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert "NOT scored" in text and "threshold" in text


def test_an_event_scoring_would_dead_letter_is_a_bad_line_with_the_reason(
        tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(ev("a", 1, "web.page_viewed", title="no url")
                                    | {"specversion": "1.0", "time": "2026-11-01T10:00:00Z"}))
    dry = cli("services.orchestrator", "simulate", "--events", str(events))
    assert dry["bad_lines"] == 1 and dry["events"] == 0
    assert dry["bad"][0].startswith("line 1: scoring would dead-letter it: data.url")


def test_an_event_far_older_than_the_simulated_clock_is_counted_as_skipped() -> None:
    pricing_1d = replace(PRICING, max_event_age_seconds=D)
    sim = Simulation(Decider([pricing_1d], ContactPolicy(caps=(), quiet_hours=None)))
    sim.feed(ev("a", 0, "crm.lead_upserted", email="a@x.io"), {}, T0 + 10 * D)
    sim.feed(ev("a", 1, "web.page_viewed", path="/pricing"), {}, T0)  # arrives 10 days late
    sim.feed(ev("b", 1, "web.page_viewed", path="/pricing"), {}, T0 + 10 * D + H)
    pricing = sim.report()["programs"]["pricing"]
    assert pricing["enrolled"] == 1
    assert pricing["skipped"] == {"event older than max_event_age": 1}
