"""The program dry-run replays recorded events through the same decisions with simulated time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    lines = [scored_record(ev("a", 1, "web.page_viewed", url="u")
                           | {"time": "2026-11-01T10:00:00Z"}),
        orjson.dumps(ev("b", 1, "crm.lead_upserted", email="b@x.io")
                     | {"time": "2026-11-01T10:00:00Z"}),
        orjson.dumps(ev("b", 2, "web.page_viewed", url="u") | {"time": "2026-11-01T11:00:00Z"}),
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
