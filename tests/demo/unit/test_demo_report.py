"""The pure parts around the services: reading a dispatch email, summarizing, the chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from deploy.demo.chart import draw
from deploy.demo.driver import Ledger
from deploy.demo.infra import DemoEnv, Ports, write_prometheus_config
from deploy.demo.report import markdown, summarize
from deploy.demo.settle import Backlog
from deploy.demo.sinks import parse_mail
from schemas.records import SendMessage
from services.dispatch.domain.email import EmailContent, Sender, build_email
from services.dispatch.domain.links import Tracker

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def dispatch_email(**track: bool) -> bytes:
    cmd = SendMessage(message_id="m-1", lead_id="demo-1-00001", channel="email",
                      template="t", program_id="welcome", step_id="hello",
                      context={"email": "lead00001@company1.example", "first_name": "Ada"})
    content = EmailContent("Hello", "Hi Ada https://www.example.com/a",
                           '<html><body><a href="https://www.example.com/a?x=1&amp;y=2">a</a>'
                           '<a href="https://www.example.com/b">b</a></body></html>')
    tracker = Tracker(cmd, "http://127.0.0.1:9", b"k" * 32, NOW, timedelta(days=90))
    msg = build_email(cmd, content, sender=Sender("Nurture <n@x.example>", "x.example"),
                      tracker=tracker, track_opens=track.get("opens", True),
                      track_clicks=track.get("clicks", True), now=NOW)
    return bytes(msg)


def test_parse_mail_finds_what_a_reader_can_act_on() -> None:
    mail = parse_mail(dispatch_email())
    assert mail.to == "lead00001@company1.example"
    assert mail.message_id == "m-1"
    assert mail.open_url is not None and mail.open_url.startswith("http://127.0.0.1:9/t/open/")
    assert len(mail.click_urls) == 2
    assert all(u.startswith("http://127.0.0.1:9/t/click/") for u in mail.click_urls)
    assert "&amp;" not in "".join(mail.click_urls)
    assert mail.unsubscribe_url is not None and "/t/unsubscribe/" in mail.unsubscribe_url


def test_parse_mail_without_tracking_has_nothing_to_follow() -> None:
    mail = parse_mail(dispatch_email(opens=False, clicks=False))
    assert mail.open_url is None
    assert mail.click_urls == ()


def test_backlog_is_empty_only_when_every_queue_is() -> None:
    assert Backlog(0, 0, 0, 0, 0, end_offsets=123).empty()
    for i in range(5):
        values = [0] * 5
        values[i] = 1
        assert not Backlog(*values, end_offsets=0).empty()


FUNNEL: dict[str, Any] = {
    "leads_by_stage": {"subscriber": 1, "lead": 2, "mql": 1, "sql": 0, "opportunity": 0,
                       "customer": 1, "recycled": 0, "disqualified": 0, "cold": 0},
    "reached": {"subscriber": 1, "lead": 4, "mql": 2, "sql": 1, "opportunity": 1,
                "customer": 1, "recycled": 0, "disqualified": 0, "cold": 0},
    "conversion": {"lead->mql": 0.5, "mql->sql": 0.5, "sql->opportunity": 1.0,
                   "opportunity->customer": 1.0},
    "median_seconds_in_stage": {s: 86400.0 for s in ("subscriber", "lead", "mql", "sql",
                                                     "opportunity", "customer", "recycled",
                                                     "disqualified", "cold")},
    "sales_cycle": {"deals": 1, "median_seconds": 20 * 86400.0}}
LEADS = [
    {"lead_id": "a", "stage": "customer", "nurtured": True, "score": 120.0,
     "opportunity": True, "customer": True},
    {"lead_id": "b", "stage": "lead", "nurtured": True, "score": 20.0,
     "opportunity": False, "customer": False},
    {"lead_id": "c", "stage": "mql", "nurtured": False, "score": 55.0,
     "opportunity": False, "customer": False},
    {"lead_id": "d", "stage": "subscriber", "nurtured": False, "score": None,
     "opportunity": False, "customer": False},
    {"lead_id": "e", "stage": "lead", "nurtured": False, "score": 5.0,
     "opportunity": False, "customer": False}]
SCORING = """# TYPE nurture_scoring_events_total counter
nurture_scoring_events_total{type="email.opened",outcome="scored"} 2.0
nurture_scoring_events_total{type="email.opened",outcome="late"} 1.0
nurture_scoring_events_total{type="email.clicked",outcome="scored"} 1.0
"""
DISPATCH = """# TYPE nurture_dispatch_messages_total counter
nurture_dispatch_messages_total{channel="email",outcome="sent"} 3.0
nurture_dispatch_messages_total{channel="crm_task",outcome="sent"} 1.0
"""


def report() -> dict[str, Any]:
    ledger = Ledger(mails=3, opened={"m1": "a", "m2": "b", "m3": "a"}, clicked={"m1": "a"},
                    won={"a": 30_000.0}, tasks=1)
    return summarize(
        funnel=FUNNEL, programs=[{"id": "welcome", "entered": 2}, {"id": "hot", "entered": 1}],
        held=[("deferred", "quiet hours", 4)],
        sent={"m1": ("welcome", "s1"), "m2": ("welcome", "s1"), "m3": ("welcome", "s2")},
        leads=LEADS, personas={"a": "buyer", "b": "researcher", "c": "evaluator",
                               "d": "researcher", "e": "drive-by"},
        ledger=ledger, bodies={"scoring": SCORING, "dispatch": DISPATCH},
        run={"leads": 5, "days": 10, "seed": 1, "wall_seconds": 3.0})


def test_summarize_joins_the_services_numbers_with_what_the_leads_did() -> None:
    rep = report()
    assert rep["programs"] == {"welcome": {"entered": 2, "sent": 3, "opened": 3, "clicked": 1,
                                           "unsubscribed": 0}}
    assert rep["entered_without_email"] == {"hot": 1}
    assert rep["nurtured"]["nurtured"] == {"leads": 2, "opportunities": 1, "customers": 1,
                                           "conversion": 0.5, "mean_deal": 30000,
                                           "revenue": 30000}
    assert rep["nurtured"]["not nurtured"]["customers"] == 0
    assert rep["nurtured"]["not nurtured"]["mean_deal"] is None
    checks = rep["checks"]
    assert (checks["emails_received_by_smtp"], checks["emails_sent_by_dispatch_metric"],
            checks["emails_sent_in_orchestrator_db"]) == (3, 3, 3)
    assert (checks["opens_scored"], checks["clicks_scored"]) == (3, 1)
    assert checks["opens_clicks_scored_late"] == 1
    assert rep["personas"]["researcher"] == {"leads": 2, "customers": 0, "median_score": 20.0}
    assert len(rep["scores"]) == 4


def test_markdown_shows_every_section(tmp_path: Path) -> None:
    md = markdown(report())
    for heading in ("## Funnel", "## Programs", "## Messages held", "## Nurtured",
                    "## Cross-checks"):
        assert heading in md
    assert "| welcome | 2 | 3 | 3 | 1 | 0 | 100.0 % | 33.3 % |" in md
    assert "| deferred | quiet hours | 4 |" in md
    assert "median 20.0 d over 1 deals" in md


def test_chart_is_a_small_png(tmp_path: Path) -> None:
    path = tmp_path / "funnel.png"
    draw(report(), path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < len(data) < 200_000


def test_prometheus_config_scrapes_this_runs_ports(tmp_path: Path) -> None:
    ports = Ports(ingest=1001, orchestrator=1002, dispatch=1003, scoring_metrics=1004,
                  smtp=1005, crm=1006)
    demo = DemoEnv("r1", ports, {}, tmp_path)
    write_prometheus_config(demo, tmp_path / "prometheus.yml")
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in config["scrape_configs"]}
    assert targets == {"ingest": ["127.0.0.1:1001"], "scoring": ["127.0.0.1:1004"],
                       "orchestrator": ["127.0.0.1:1002"], "dispatch": ["127.0.0.1:1003"]}
    assert all(job["static_configs"][0]["labels"] == {"demo_run": "r1"}
               for job in config["scrape_configs"])
