"""The shipped playbooks (config/programs/) driven through the real Decider with the shipped
contact policy and simulated time: what each sends when, on which channel, with which
template; when it ends and why; which stages it sets. Times are chosen in the lead's daytime
unless the test is about quiet hours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.records import ModelScore
from services.orchestrator.adapters.program_files import load_policy, load_programs
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import (
    Command,
    Effects,
    EnrollmentChange,
    Note,
    StageChange,
    Timer,
)
from services.orchestrator.domain.lead import Contact, Lead
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program
from tests.support import model_score

ROOT = Path(__file__).resolve().parents[3]
H, D = 3600, 86400
NY, BERLIN = "America/New_York", "Europe/Berlin"
DEMO = ("web.form_submitted", {"form_id": "demo", "form_type": "demo_request"})
BLOG = ("web.page_viewed", {"url": "https://www.example.com/blog/x", "path": "/blog/x"})
PRICING = ("web.page_viewed", {"url": "https://www.example.com/pricing", "path": "/pricing"})


def local(text: str, tz: str = NY) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


T0 = local("2026-09-21 14:00")  # a Monday afternoon in New York


def score(*crossed: str, **snapshot: Any) -> dict[str, ModelScore]:
    """A scored event's snapshot of the b2b model, crossing `crossed` thresholds upward."""
    return {"b2b": model_score(60, crossed=[(name, "up") for name in crossed], **snapshot)}


@pytest.fixture(scope="module")
def programs() -> list[Program]:
    return load_programs([ROOT / "config" / "programs"])


@pytest.fixture(scope="module")
def policy() -> ContactPolicy:
    return load_policy(ROOT / "config" / "contact-policy.yaml")


@dataclass
class Sim:
    """One lead living through the shipped programs: events at given times, and every timer
    fired at its due time, earliest first, as the timer poller does."""

    decider: Decider
    lead: Lead
    timers: list[Timer] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    enrollments: list[EnrollmentChange] = field(default_factory=list)
    stage_changes: list[StageChange] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def event(self, at: float, etype: str, data: dict[str, Any],
              snapshot: dict[str, ModelScore] | None = None) -> None:
        self.run_until(at)
        self.take(self.decider.on_event(self.lead, {"type": etype, "data": data},
                                        snapshot or {}, event_time=at, now=at))

    def run_until(self, until: float) -> None:
        while due := [t for t in self.timers if t.due_at <= until]:
            timer = min(due, key=lambda t: t.due_at)
            self.timers.remove(timer)
            self.take(self.decider.on_timer(self.lead, timer, timer.due_at))

    def take(self, fx: Effects) -> None:
        self.timers += fx.timers
        self.commands += fx.commands
        self.enrollments += fx.enrollments
        self.stage_changes += fx.stage_changes
        self.notes += fx.notes

    def sent(self, program: str | None = None) -> list[tuple[float, str, str | None]]:
        """(seconds after T0, channel, template) of each message, in order."""
        return [(c.created_at - T0, c.channel, c.template) for c in self.commands
                if program in (None, c.program_id)]

    def sent_at(self, tz: str) -> list[tuple[str, str, str | None]]:
        """(local time in `tz`, channel, template) of each message, in order."""
        return [(datetime.fromtimestamp(c.created_at, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M"),
                 c.channel, c.template) for c in self.commands]

    def ends(self, program: str) -> list[tuple[float, str, str | None]]:
        """(seconds after T0, status, reason) of each time an enrollment in `program` ended."""
        return [(e.at - T0, e.status, e.reason) for e in self.enrollments
                if e.program_id == program and e.status != "entered"]


def sim(programs: list[Program], policy: ContactPolicy, *, stage: str = "lead",
        **profile: Any) -> Sim:
    lead = Lead("lead-1", stage=stage, profile={
        "email": "ada@acme.example", "first_name": "Ada", "timezone": NY, "owner_id": "usr_7",
        **profile})
    return Sim(Decider(programs, policy), lead)


def play(s: Sim, events: list[tuple[float, tuple[str, dict[str, Any]]]], until: float) -> Sim:
    for at, (etype, data) in events:
        s.event(T0 + at, etype, data)
    s.run_until(T0 + until)
    return s


# -- all programs ----------------------------------------------------------------------------

NURTURE = {"welcome", "pricing-abandoner", "webinar-follow-up", "nurture-tracks",
           "mql-accelerator", "re-engagement", "lost-deal", "open-sms-follow-up"}
CUSTOMER = {"customer-onboarding", "product-adoption", "contract-renewal"}


def test_every_nurture_program_leaves_sales_leads_to_sales(programs: list[Program]) -> None:
    by_id = {p.id: p for p in programs}
    assert set(by_id) == NURTURE | CUSTOMER | {"hot-lead-handoff"}
    for program_id in NURTURE:
        assert {"sql", "opportunity", "customer"} <= by_id[program_id].exclude_stages, program_id
    for program_id in CUSTOMER:
        assert "customer" not in by_id[program_id].exclude_stages
    assert by_id["hot-lead-handoff"].trigger.stage == "sql"


# -- pricing page abandoner ------------------------------------------------------------------

@pytest.mark.parametrize(("events", "sent", "ends"), [
    ([(0, PRICING)],
     [(H, "email", "pricing-followup"), (2 * D + H, "email", "pricing-case-study"),
      (6 * D + H, "crm_task", "pricing-call-brief")],
     [(6 * D + H, "completed", "completed")]),
    ([(0, PRICING), (D, DEMO)],
     [(H, "email", "pricing-followup")], [(D, "exited", "goal")]),
    ([(0, PRICING), (30 * 60, DEMO)], [], [(30 * 60, "exited", "goal")]),
    ([(0, BLOG)], [], []),
], ids=["no-demo", "demo-after-first-email", "demo-at-once", "not-pricing"])
def test_pricing_abandoner(programs: list[Program], policy: ContactPolicy,
                           events: list[tuple[float, tuple[str, dict[str, Any]]]],
                           sent: list[Any], ends: list[Any]) -> None:
    s = play(sim(programs, policy), events, until=10 * D)
    assert s.sent() == sent
    assert s.ends("pricing-abandoner") == ends
    if sent and sent[-1][1] == "crm_task":
        (task,) = [c for c in s.commands if c.channel == "crm_task"]
        assert task.due_at == task.created_at + D
        assert task.subject == "Offer a call: looked at pricing, no demo request yet"


def test_pricing_abandoner_waits_for_the_morning_in_the_leads_time_zone(
        programs: list[Program], policy: ContactPolicy) -> None:
    s = play(sim(programs, policy), [(local("2026-09-21 19:30") - T0, PRICING)], until=10 * D)
    assert s.sent_at(NY) == [
        ("2026-09-22 08:00", "email", "pricing-followup"),  # due 20:30: quiet hours
        ("2026-09-24 08:00", "email", "pricing-case-study"),
        ("2026-09-28 08:00", "crm_task", "pricing-call-brief"),
    ]
    assert [(n.status, n.reason) for n in s.notes if n.status != "sent"] == [
        ("deferred", "quiet hours")]


# -- welcome series --------------------------------------------------------------------------

def test_welcome_series_then_nurture_tracks(programs: list[Program],
                                            policy: ContactPolicy) -> None:
    s = sim(programs, policy, email=None)
    s.event(T0, "crm.lead_upserted", {"email": "ada@acme.example", "title": "Data Engineer"})
    s.run_until(T0 + 10 * D)
    assert s.sent() == [
        (0, "email", "welcome-1-hello"), (2 * D, "email", "welcome-2-getting-started"),
        (5 * D, "email", "welcome-3-customer-stories"),
        (9 * D, "email", "awareness-data-maturity-guide")]
    assert [c.program_id for c in s.commands][-1] == "nurture-tracks"
    assert s.ends("welcome") == [(9 * D, "completed", "completed")]
    assert ("nurture-tracks", "entered", "program welcome") in [
        (e.program_id, e.status, e.reason) for e in s.enrollments]


def test_welcome_needs_an_email_address_and_runs_once(programs: list[Program],
                                                      policy: ContactPolicy) -> None:
    s = sim(programs, policy, email=None)
    s.event(T0, "crm.lead_upserted", {"title": "Data Engineer"})
    assert s.enrollments == []
    s.event(T0 + H, "crm.lead_upserted", {"email": "ada@acme.example"})
    s.event(T0 + 30 * D, "crm.lead_upserted", {"email": "ada@new.example"})
    s.run_until(T0 + 40 * D)
    assert [t for _, _, t in s.sent("welcome")] == [
        "welcome-1-hello", "welcome-2-getting-started", "welcome-3-customer-stories"]


# -- webinar follow-up -----------------------------------------------------------------------

@pytest.mark.parametrize(("interests", "related"), [
    (["streaming", "analytics"], "webinar-related-streaming-guide"),
    (["analytics"], "webinar-related-analytics-guide"),
    ([], "webinar-related-best-practices"),
])
def test_webinar_follow_up_by_interest(programs: list[Program], policy: ContactPolicy,
                                       interests: list[str], related: str) -> None:
    s = sim(programs, policy)
    s.event(T0, "web.webinar_attended", {"webinar_id": "wb-1"},
            score(interests=interests) if interests else None)
    s.run_until(T0 + 5 * D)
    assert s.sent() == [(2 * H, "email", "webinar-recording"), (3 * D + 2 * H, "email", related)]
    assert s.ends("webinar-follow-up") == [(3 * D + 2 * H, "completed", "completed")]
    assert s.lead.tags == ["webinar-followed-up"]


# -- nurture tracks --------------------------------------------------------------------------

@pytest.mark.parametrize(("journey", "interests", "industry", "templates"), [
    (None, [], None, ["awareness-data-maturity-guide", "education-architecture-session",
                      "validation-customer-stories", "validation-demo-invite"]),
    ("awareness", ["streaming"], None,
     ["awareness-streaming-trends-report", "education-streaming-pipelines-ebook",
      "validation-customer-stories", "validation-demo-invite"]),
    ("consideration", ["analytics"], "Software",
     ["education-real-time-analytics-ebook", "validation-customer-stories",
      "validation-demo-invite"]),
    ("decision", [], "Financial Services",
     ["validation-financial-services-case-study", "validation-demo-invite"]),
])
def test_nurture_tracks_start_at_the_buyer_journey_and_pick_by_interest(
        programs: list[Program], policy: ContactPolicy, journey: str | None,
        interests: list[str], industry: str | None, templates: list[str]) -> None:
    s = sim(programs, policy, **({"industry": industry} if industry else {}))
    snapshot = score(interests=interests, journey_stage=journey) if journey else None
    s.event(T0, "web.content_downloaded", {"asset_id": "ebook-1"}, snapshot)
    s.run_until(T0 + 30 * D)
    assert s.sent() == [(5 * D * i, "email", t) for i, t in enumerate(templates)]
    assert s.ends("nurture-tracks") == [(5 * D * (len(templates) - 1), "completed", "completed")]


def test_nurture_tracks_end_when_a_demo_is_requested(programs: list[Program],
                                                     policy: ContactPolicy) -> None:
    s = play(sim(programs, policy), [(0, ("web.content_downloaded", {"asset_id": "e"})),
                                     (6 * D, DEMO)], until=30 * D)
    assert [t for _, _, t in s.sent()] == ["awareness-data-maturity-guide",
                                           "education-architecture-session"]
    assert s.ends("nurture-tracks") == [(6 * D, "exited", "goal")]


# -- MQL accelerator and the hot-lead hand-off -----------------------------------------------

@pytest.mark.parametrize(("click", "sent", "end"), [
    (None, [(0, "email", "accelerator-roi-guide"), (2 * D, "email", "accelerator-customer-story"),
            (5 * D, "email", "accelerator-demo-invite")], (5 * D, "exited", "no click")),
    (3 * D, [(0, "email", "accelerator-roi-guide"), (2 * D, "email", "accelerator-customer-story"),
             (3 * D, "crm_task", "accelerator-owner-brief")], (3 * D, "completed", "completed")),
], ids=["no-click", "click"])
def test_mql_accelerator(programs: list[Program], policy: ContactPolicy, click: float | None,
                         sent: list[Any], end: Any) -> None:
    s = sim(programs, policy)
    s.event(T0, *BLOG, score("mql"))
    if click is not None:
        s.event(T0 + click, "email.clicked", {"message_id": "m", "url": "https://x.example"})
    s.run_until(T0 + 10 * D)
    assert [(c.from_stage, c.to_stage) for c in s.stage_changes] == [("lead", "mql")]
    assert s.sent() == sent
    assert s.ends("mql-accelerator") == [end]


def test_becoming_sql_stops_nurture_and_hands_the_lead_to_its_owner(
        programs: list[Program], policy: ContactPolicy) -> None:
    s = sim(programs, policy)
    s.event(T0, *PRICING)
    s.event(T0 + D, *BLOG, score("sql", breakdown=[{"rule": "pricing-page", "points": 20}]))
    s.run_until(T0 + 20 * D)
    assert s.sent() == [(H, "email", "pricing-followup"), (D, "crm_task", "hot-lead-brief")]
    assert s.ends("pricing-abandoner") == [(D, "exited", "stage changed to sql")]
    assert s.ends("hot-lead-handoff") == [(D, "completed", "completed")]
    assert [(c.to_stage, c.cause) for c in s.stage_changes] == [("sql", "b2b score crossed sql")]
    task = s.commands[-1]
    assert (task.subject, task.due_at) == ("Hot lead: sales-qualified, follow up today",
                                           T0 + D + 4 * H)
    assert task.context["scores"]["b2b"]["breakdown"] == [{"rule": "pricing-page", "points": 20}]


def test_crossing_mql_and_sql_at_once_only_hands_off(programs: list[Program],
                                                     policy: ContactPolicy) -> None:
    s = sim(programs, policy)
    s.event(T0, *BLOG, score("mql", "sql"))
    assert s.sent() == [(0, "crm_task", "hot-lead-brief")]
    assert "mql-accelerator" not in {e.program_id for e in s.enrollments}


# -- re-engagement and lost deals ------------------------------------------------------------

def test_re_engagement_after_60_quiet_days_ends_in_cold(programs: list[Program],
                                                        policy: ContactPolicy) -> None:
    s = play(sim(programs, policy), [(0, BLOG)], until=100 * D)
    assert s.sent() == [(60 * D, "email", "reengage-we-miss-you"),
                        (74 * D, "email", "reengage-whats-new"),
                        (88 * D, "email", "reengage-breakup")]
    assert [(c.at - T0, c.to_stage) for c in s.stage_changes] == [(95 * D, "cold")]
    assert s.lead.suppressed == {"all": "cold"}
    s.event(T0 + 120 * D, *BLOG)  # back again: a lead, and reachable
    assert (s.lead.stage, s.lead.suppressed) == ("lead", {})


def test_re_engagement_ends_at_the_first_sign_of_life(programs: list[Program],
                                                      policy: ContactPolicy) -> None:
    s = play(sim(programs, policy), [(0, BLOG), (70 * D, ("email.clicked", {
        "message_id": "m", "url": "https://x.example"}))], until=100 * D)
    assert s.sent() == [(60 * D, "email", "reengage-we-miss-you")]
    assert s.ends("re-engagement") == [(70 * D, "exited", "goal")]
    assert s.stage_changes == []


@pytest.mark.parametrize(("events", "sent", "end"), [
    ([], [(30 * D, "email", "lost-deal-check-in"), (60 * D, "email", "lost-deal-product-updates"),
          (120 * D, "email", "lost-deal-customer-story"),
          (120 * D, "crm_task", "lost-deal-brief")], (120 * D, "completed", "completed")),
    ([(45 * D, ("web.form_submitted", {"form_id": "c", "form_type": "contact"}))],
     [(30 * D, "email", "lost-deal-check-in")], (45 * D, "exited", "goal")),
], ids=["silent", "gets-in-touch"])
def test_lost_deal_re_engagement(programs: list[Program], policy: ContactPolicy,
                                 events: list[Any], sent: list[Any], end: Any) -> None:
    s = play(sim(programs, policy, stage="opportunity"),
             [(0, ("crm.deal_lost", {"deal_id": "d1"})), *events], until=130 * D)
    assert [(c.from_stage, c.to_stage) for c in s.stage_changes] == [("opportunity", "recycled")]
    assert s.sent("lost-deal") == sent
    assert s.ends("lost-deal") == [end]


# -- customers -------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "welcome"), [
    ({"seniority": "vp", "title": "VP Engineering"}, "onboarding-executive-value-plan"),
    ({"seniority": "individual_contributor", "title": "Staff Data Engineer"},
     "onboarding-technical-setup"),
    ({"seniority": "manager", "title": "Marketing Manager"}, "onboarding-getting-started"),
    ({}, "onboarding-getting-started"),
])
def test_customer_onboarding_by_role(programs: list[Program], policy: ContactPolicy,
                                     role: dict[str, str], welcome: str) -> None:
    s = play(sim(programs, policy, stage="opportunity", **role),
             [(0, ("crm.deal_won", {"deal_id": "d1"}))], until=12 * D)
    assert [(c.from_stage, c.to_stage) for c in s.stage_changes] == [("opportunity", "customer")]
    assert s.sent("customer-onboarding") == [
        (0, "email", welcome), (3 * D, "email", "onboarding-training-invite"),
        (10 * D, "crm_task", "onboarding-check-in-brief")]


ACTIVITY = ("product.activity", {"action": "pipeline_created", "feature": "pipelines"})


def test_product_adoption_helps_customers_with_low_usage(programs: list[Program],
                                                         policy: ContactPolicy) -> None:
    usage = [(i * D, ACTIVITY) for i in (1, 4, 9)]
    s = play(sim(programs, policy, stage="opportunity"),
             [(0, ("crm.deal_won", {"deal_id": "d1"})), *usage], until=30 * D)
    assert s.sent("product-adoption") == [(14 * D, "email", "adoption-quick-wins"),
                                          (21 * D, "crm_task", "adoption-low-usage-brief")]
    assert s.ends("product-adoption") == [(21 * D, "exited", "low usage")]


def test_product_adoption_leaves_active_customers_alone(programs: list[Program],
                                                        policy: ContactPolicy) -> None:
    usage = [(i * H + D, ACTIVITY) for i in range(12)]
    s = play(sim(programs, policy, stage="opportunity"),
             [(0, ("crm.deal_won", {"deal_id": "d1"})), *usage], until=30 * D)
    assert s.sent("product-adoption") == []
    assert s.ends("product-adoption") == [(14 * D, "completed", "completed")]
    assert s.lead.tags == ["healthy-adoption"]


RENEWAL = ("crm.lead_upserted", {"contract_renewal_date": "2027-01-15"})


def test_contract_renewal_at_90_60_and_30_days(programs: list[Program],
                                               policy: ContactPolicy) -> None:
    s = play(sim(programs, policy, stage="customer", timezone=BERLIN), [(0, RENEWAL)],
             until=120 * D)
    first = datetime(2026, 10, 17, tzinfo=UTC).timestamp()  # 90 days before, midnight UTC
    assert [e.at for e in s.enrollments if e.status == "entered"] == [first]
    assert s.sent_at(BERLIN) == [
        ("2026-10-17 08:00", "email", "renewal-90-days-value-recap"),  # due 02:00 local
        ("2026-11-16 08:00", "email", "renewal-60-days-roadmap"),  # due 07:00 (winter time)
        ("2026-12-16 08:00", "crm_task", "renewal-owner-brief"),
        ("2026-12-16 08:00", "email", "renewal-30-days-reminder"),
    ]


def test_contract_renewal_task_still_goes_after_an_unsubscribe(programs: list[Program],
                                                               policy: ContactPolicy) -> None:
    s = play(sim(programs, policy, stage="customer", timezone=BERLIN),
             [(0, RENEWAL), (D, ("email.unsubscribed", {"message_id": "m"}))], until=120 * D)
    assert s.sent_at(BERLIN) == [("2026-12-16 01:00", "crm_task", "renewal-owner-brief")]
    assert [(n.step_id, n.status, n.reason) for n in s.notes if n.status == "dropped"] == [
        (step, "dropped", "suppressed: unsubscribed")
        for step in ("renewal-90", "renewal-60", "renewal-30")]


# -- SMS follow-up of an email open ----------------------------------------------------------

SMS_OK = {"phone": "+14155550123", "consent.sms": "granted"}
OPENED = ("email.opened", {"message_id": "m"})
CLICKED = ("email.clicked", {"message_id": "m", "url": "https://x.example"})


@pytest.mark.parametrize(("profile", "events", "entered", "sent"), [
    (SMS_OK, [(0, OPENED)], [0], [(H, "sms", "sms-follow-up-after-open")]),
    ({**SMS_OK, "consent.sms": "unknown"}, [(0, OPENED)], [], []),
    ({**SMS_OK, "consent.sms": "denied"}, [(0, OPENED)], [], []),
    ({"consent.sms": "granted"}, [(0, OPENED)], [], []),
    (SMS_OK, [(0, OPENED), (30 * 60, CLICKED)], [0], []),
    (SMS_OK, [(0, OPENED), (10 * D, OPENED), (31 * D, OPENED)], [0, 31 * D],
     [(H, "sms", "sms-follow-up-after-open"), (31 * D + H, "sms", "sms-follow-up-after-open")]),
], ids=["consented", "consent-unknown", "consent-denied", "no-phone", "clicked-meanwhile",
        "once-a-month"])
def test_email_open_sms_follow_up(programs: list[Program], policy: ContactPolicy,
                                  profile: dict[str, str], events: list[Any],
                                  entered: list[float], sent: list[Any]) -> None:
    s = play(sim(programs, policy, **profile), events, until=40 * D)
    assert [e.at - T0 for e in s.enrollments
            if (e.program_id, e.status) == ("open-sms-follow-up", "entered")] == entered
    assert s.sent("open-sms-follow-up") == sent


def test_sms_follow_up_waits_for_the_morning_or_is_dropped_over_the_cap(
        programs: list[Program], policy: ContactPolicy) -> None:
    evening = play(sim(programs, policy, **SMS_OK),
                   [(local("2026-09-21 19:30") - T0, OPENED)], until=2 * D)
    assert evening.sent_at(NY) == [("2026-09-22 08:00", "sms", "sms-follow-up-after-open")]

    busy = sim(programs, policy, **SMS_OK)
    busy.lead.contacts = [Contact(T0 - 2 * D, "sms", "x"), Contact(T0 - D, "sms", "x")]
    play(busy, [(0, OPENED)], until=10 * D)
    assert busy.sent() == []
    assert [(n.status, n.reason) for n in busy.notes] == [("dropped", "expired: frequency cap")]


# -- the contact budget across programs ------------------------------------------------------

def test_programs_share_one_contact_budget(programs: list[Program],
                                           policy: ContactPolicy) -> None:
    s = sim(programs, policy)
    s.lead.contacts = [Contact(T0 - 2 * D, "email", "x"), Contact(T0 - D, "email", "x")]
    s.event(T0, "web.content_downloaded", {"asset_id": "e"}, score("mql"))
    # one slot left this week: the accelerator (priority 65) beats the tracks (30)
    assert s.sent() == [(0, "email", "accelerator-roi-guide")]
    assert [(n.program_id, n.status, n.reason, n.until) for n in s.notes][-1] == (
        "nurture-tracks", "deferred", "frequency cap", T0 + 5 * D)
    for at, event in [(H, PRICING), (2 * H, ("web.webinar_attended", {"webinar_id": "w"}))]:
        s.event(T0 + at, *event)
    s.run_until(T0 + 30 * D)
    emails = sorted(c.created_at for c in s.commands if c.channel == "email")
    emails = [T0 - 2 * D, T0 - D, *emails]
    assert len(emails) > 8
    assert all(sum(at <= other < at + 7 * D for other in emails) <= 3 for at in emails)
