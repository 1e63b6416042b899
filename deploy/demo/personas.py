"""The simulated population (pure and seeded): who the leads are and what they do.

Four personas, each a few numbers: researchers read the blog and rarely buy, evaluators look at
pricing and webinars and sometimes ask for a demo, buyers ask for a demo within days, and
drive-by visitors go cold. A click on a nurture email raises a lead's intent (their chance of
asking for a demo, which scores), which is the effect nurturing is meant to have; sales (the
simulated CRM) opens an opportunity some days after the hand-off task of a sales-qualified lead,
and wins or loses it.

Every function here is pure: randomness comes from `random.Random` seeded with the run's seed,
the lead and the moment, so a run is reproducible and each function unit-testable."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from schemas.vocabulary import rfc3339

DAY = 86400.0


@dataclass(frozen=True)
class Persona:
    name: str
    share: float            # of the population
    daily_visits: float     # page views a day while active
    active_days: float      # mean days of activity before going quiet
    pricing: float          # share of page views on /pricing
    downloads: float        # content downloads a day
    webinars: float         # webinar registrations a day
    demo_per_day: float     # chance of a demo request a day, before intent
    open_p: float           # email reactions
    click_p: float          # given an open
    unsubscribe_p: float
    opportunity_p: float    # sales opens an opportunity after a hand-off
    win_p: float
    deal: tuple[float, float]  # deal amount range
    senior_p: float
    newsletter_p: float


PERSONAS: tuple[Persona, ...] = (
    Persona("researcher", 0.35, 0.5, 15, 0.03, 0.03, 0.01, 0.002, 0.45, 0.25, 0.01,
            0.35, 0.25, (6_000, 18_000), 0.3, 0.5),
    Persona("evaluator", 0.25, 1.2, 20, 0.15, 0.08, 0.04, 0.012, 0.55, 0.35, 0.01,
            0.5, 0.3, (12_000, 45_000), 0.6, 0.1),
    Persona("buyer", 0.1, 2.5, 14, 0.3, 0.05, 0.02, 0.25, 0.6, 0.4, 0.0,
            0.75, 0.45, (25_000, 90_000), 0.8, 0.0),
    Persona("drive-by", 0.3, 1.0, 2, 0.02, 0.01, 0.0, 0.0, 0.12, 0.1, 0.05,
            0.1, 0.2, (5_000, 12_000), 0.15, 0.2),
)
BY_NAME = {p.name: p for p in PERSONAS}
TOPICS = ("analytics", "automation", "security", "integrations", "reporting")
INDUSTRIES = ("software", "financial services", "healthcare", "retail", "manufacturing",
              "education")
TIMEZONES = ("America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin",
             "UTC")
COUNTRIES = {"America/New_York": "US", "America/Los_Angeles": "US", "Europe/London": "GB",
             "Europe/Berlin": "DE", "UTC": "IN"}
NO_EMAIL = 0.15
SENIOR = ("manager", "director", "vp", "c_level")
JUNIOR = ("individual_contributor", "intern", "other")


@dataclass(frozen=True)
class LeadSpec:
    """A simulated lead: who they are and when they first show up (seconds from the start)."""

    lead_id: str
    persona: str
    arrives: float
    profile: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class LeadState:
    """What the simulation remembers about a lead between steps."""

    intent: float = 1.0
    unsubscribed: bool = False
    demo_at: float | None = None
    sales_at: float | None = None      # sales got the hand-off task: it is on the lead
    opportunity_at: float | None = None
    outcome: str | None = None          # "won", "lost" or "no opportunity"
    amount: float | None = None
    webinars: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimEvent:
    """One event to post: CloudEvent `type`, event time (seconds from the start) and data."""

    type: str
    at: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Reaction:
    opened: bool
    clicked: bool
    unsubscribed: bool


def rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))  # noqa: S311 - a simulation


def population(n: int, days: int, seed: int) -> list[LeadSpec]:
    """`n` leads, personas by share, arriving over the first two thirds of the run."""
    r = rng(seed, "population")
    weights = [p.share for p in PERSONAS]
    leads = []
    for i in range(n):
        persona = r.choices(PERSONAS, weights)[0]
        arrives = r.uniform(0, days * DAY * 2 / 3)
        leads.append(LeadSpec(f"demo-{seed}-{i:05d}", persona.name, arrives,
                              profile(persona, i, r)))
    return sorted(leads, key=lambda lead: lead.arrives)


def profile(persona: Persona, i: int, r: random.Random) -> dict[str, Any]:
    tz = r.choice(TIMEZONES)
    senior = r.random() < persona.senior_p
    domain = "gmail.example" if r.random() < 0.15 else f"company{r.randrange(400)}.example"
    # about one lead in six is known by phone only (a trade-show list, a call): never emailed,
    # the "not nurtured" group the report compares with
    contact = {"phone": f"+1555{i:07d}"} if r.random() < NO_EMAIL else \
        {"email": f"lead{i:05d}@{domain}"}
    return {**contact, "first_name": f"Lead{i}",
            "seniority": r.choice(SENIOR if senior else JUNIOR),
            "title": "Engineer" if r.random() < 0.3 else "Operations",
            "industry": r.choice(INDUSTRIES), "company_size": r.choice((8, 40, 200, 1200, 9000)),
            "timezone": tz, "country": COUNTRIES[tz], "lead_source": r.choice(
                ("organic", "paid-search", "social", "referral"))}


def activity(persona: Persona, since_arrival: float) -> float:
    """How active a lead still is (1 on arrival, fading with the persona's attention span)."""
    return float(0.5 ** (since_arrival / (persona.active_days * DAY)))


def plan(lead: LeadSpec, state: LeadState, t0: float, t1: float,
         seed: int) -> tuple[list[SimEvent], LeadState]:
    """What the lead (and sales, for the lead) does in [t0, t1): the events and the new state."""
    if t1 <= lead.arrives:
        return [], state
    persona = BY_NAME[lead.persona]
    r = rng(seed, lead.lead_id, round(t0))
    events: list[SimEvent] = []
    start = max(t0, lead.arrives)
    if t0 <= lead.arrives < t1:
        # newsletter sign-ups come first (they start as subscribers), the CRM record a moment on
        newsletter = r.random() < persona.newsletter_p
        if newsletter:
            events.append(SimEvent("web.form_submitted", lead.arrives,
                                   {"form_id": "newsletter", "form_type": "newsletter"}))
        events.append(SimEvent("crm.lead_upserted", lead.arrives + newsletter,
                               dict(lead.profile)))
    span_days = (t1 - start) / DAY
    level = activity(persona, start - lead.arrives) * (0.5 + state.intent / 2)
    for _ in range(_poisson(r, persona.daily_visits * level * span_days)):
        at = r.uniform(start, t1)
        path = "/pricing" if r.random() < persona.pricing * state.intent else \
            f"/blog/{r.choice(TOPICS)}"
        events.append(SimEvent("web.page_viewed", at, {
            "url": f"https://www.example.com{path}", "path": path,
            "content_topics": [path.rsplit("/", 1)[-1]] if path.startswith("/blog") else []}))
    for _ in range(_poisson(r, persona.downloads * level * span_days)):
        topic = r.choice(TOPICS)
        events.append(SimEvent("web.content_downloaded", r.uniform(start, t1), {
            "content_id": f"guide-{topic}", "content_type": "ebook",
            "content_topics": [topic]}))
    webinars = state.webinars
    for _ in range(_poisson(r, persona.webinars * level * span_days)):
        webinar = f"webinar-{r.choice(TOPICS)}"
        events.append(SimEvent("web.webinar_registered", r.uniform(start, t1),
                               {"webinar_id": webinar}))
        webinars = (*webinars, webinar)
    if webinars and r.random() < 0.35 * span_days:  # a registered webinar takes place
        events.append(SimEvent("web.webinar_attended", r.uniform(start, t1),
                               {"webinar_id": webinars[0], "attended_seconds": 2400}))
        webinars = webinars[1:]
    state = replace(state, webinars=webinars)
    daily = min(0.95, persona.demo_per_day * state.intent * level)
    if state.demo_at is None and not state.unsubscribed \
            and r.random() < 1 - (1 - daily) ** span_days:
        at = r.uniform(start, t1)
        events.append(SimEvent("web.form_submitted", at,
                               {"form_id": "demo", "form_type": "demo_request"}))
        state = replace(state, demo_at=at)
    crm, state = sales(lead, persona, state, t0, t1, r)
    return sorted(events + crm, key=lambda e: e.at), state


def sales(lead: LeadSpec, persona: Persona, state: LeadState, t0: float, t1: float,
          r: random.Random) -> tuple[list[SimEvent], LeadState]:
    """The CRM side: an opportunity 3 days after the hand-off, a decision 10-40 days on."""
    opp_id = f"opp-{lead.lead_id}"
    if state.sales_at is not None and state.opportunity_at is None and state.outcome is None \
            and state.sales_at + 3 * DAY < t1:
        at = max(t0, state.sales_at + 3 * DAY)
        if r.random() < persona.opportunity_p:
            amount = round(r.uniform(*persona.deal), -2)
            return [SimEvent("crm.opportunity_opened", at, {
                "opportunity_id": opp_id, "amount": amount, "currency": "USD"})], \
                replace(state, opportunity_at=at, amount=amount)
        return [], replace(state, outcome="no opportunity")
    if state.opportunity_at is not None and state.outcome is None:
        cycle = rng(0, lead.lead_id, "cycle").uniform(10, 40) * DAY
        if state.opportunity_at + cycle < t1:
            at = max(t0, state.opportunity_at + cycle)
            if r.random() < persona.win_p * min(state.intent, 2.0):
                return [SimEvent("crm.deal_won", at, {
                    "opportunity_id": opp_id, "amount": state.amount, "currency": "USD"})], \
                    replace(state, outcome="won")
            return [SimEvent("crm.deal_lost", at, {
                "opportunity_id": opp_id, "amount": state.amount, "currency": "USD",
                "reason": r.choice(("price", "timing", "competitor", "no decision"))})], \
                replace(state, outcome="lost")
    return [], state


def react(lead: LeadSpec, state: LeadState, message_id: str,
          seed: int) -> tuple[Reaction, LeadState]:
    """How the lead treats one email: open, click (raises intent), unsubscribe."""
    persona = BY_NAME[lead.persona]
    r = rng(seed, lead.lead_id, message_id)
    opened = r.random() < persona.open_p
    clicked = opened and r.random() < persona.click_p
    unsubscribed = r.random() < persona.unsubscribe_p * (0.5 if opened else 1.0)
    if clicked:
        state = replace(state, intent=min(state.intent + 0.5, 3.0))
    if unsubscribed:
        state = replace(state, unsubscribed=True)
    return Reaction(opened, clicked, unsubscribed), state


def handed_off(state: LeadState, at: float) -> LeadState:
    """Sales got the hand-off task for the lead (the orchestrator's CRM task for an sql)."""
    return state if state.sales_at is not None else replace(state, sales_at=at)


def cloudevent(lead_id: str, n: str, ev: SimEvent, start: float) -> dict[str, Any]:
    """The CloudEvent of a simulated event (`start`: the epoch second the run begins at)."""
    source = "crm:demo" if ev.type.startswith("crm.") else "https://www.example.com"
    return {"specversion": "1.0", "id": f"{lead_id}-{n}", "source": source,
            "type": ev.type, "subject": lead_id, "time": rfc3339(start + ev.at),
            "data": ev.data}


def _poisson(r: random.Random, mean: float) -> int:
    """Knuth's method; the means here are small."""
    if mean <= 0:
        return 0
    limit, k, p = pow(2.718281828459045, -mean), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1
