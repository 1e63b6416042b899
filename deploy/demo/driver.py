"""The simulation loop: a population lives through `days` simulated days in steps, through the
real services.

Each step: move the orchestrator's shared clock to the end of the step
(`POST /v1/admin/clock/advance`); let the leads react to the emails that reached the demo's SMTP
server during the last step (GET the open pixel, GET a signed click link, POST one-click
unsubscribe) and sales to the hand-off tasks the CRM got; post the step's behavior and CRM events to
ingest with their simulated `time`; then poll until the pipeline has settled (settle.py).

Ingest runs in this process with a clock that is the wall clock plus the same offset as the
orchestrator's (`create_app(clock=...)`), because it refuses event times in its future and
stamps opens and clicks with its own time: both must be simulated time, or events from
"day 40" would be refused and opens on day 40 would be stamped day 0."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from deploy.demo import personas as p
from deploy.demo.settle import Settler
from deploy.demo.sinks import Mail, Mailbox

BATCH = 500
HANDOFF = "hot-lead-handoff"  # config/programs/hot-lead-handoff.yaml: a task for each sql


class OffsetClock:
    """The wall clock plus an offset: ingest's view of the orchestrator's shared clock."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)


@dataclass
class Ledger:
    """What the simulation did, to report and to cross-check against the services."""

    posted: Counter[str] = field(default_factory=Counter)
    mails: int = 0
    opened: dict[str, str] = field(default_factory=dict)      # message id -> lead id
    clicked: dict[str, str] = field(default_factory=dict)
    unsubscribed: dict[str, str] = field(default_factory=dict)
    tasks: int = 0
    unknown_recipients: int = 0
    follow_errors: Counter[str] = field(default_factory=Counter)
    won: dict[str, float] = field(default_factory=dict)       # lead id -> amount


@dataclass
class Endpoints:
    ingest: str
    orchestrator: str
    api_key: str
    admin_token: str


class Simulation:
    def __init__(self, *, leads: list[p.LeadSpec], days: int, seed: int, step_hours: float,
                 endpoints: Endpoints, client: httpx.AsyncClient, clock: OffsetClock,
                 settler: Settler, mailbox: Mailbox, tasks: list[dict[str, Any]],
                 settle_timeout: float = 600.0) -> None:
        self.leads, self.days, self.seed = leads, days, seed
        self.step = step_hours * 3600
        self.ep, self.client, self.clock = endpoints, client, clock
        self.settler, self.mailbox, self.tasks = settler, mailbox, tasks
        self.settle_timeout = settle_timeout
        self.states = {lead.lead_id: p.LeadState() for lead in leads}
        self.by_id = {lead.lead_id: lead for lead in leads}
        self.by_email = {str(lead.profile["email"]).lower(): lead.lead_id for lead in leads
                         if "email" in lead.profile}
        self.ledger = Ledger()
        self.start = float(int(time.time() // 3600 * 3600))  # simulated t=0, an hour boundary
        self._mail_seen = self._tasks_seen = 0

    async def run(self, progress: Any = print) -> Ledger:
        steps = int(self.days * 86400 // self.step)
        started = time.monotonic()
        for k in range(steps):
            t0, t1 = k * self.step, (k + 1) * self.step
            await self.advance_to(self.start + t1)
            await self.react(t1)
            await self.post(k, t0, t1)
            await self.settler.wait(limit=self.settle_timeout)
            if int(t1 // 86400) != int(t0 // 86400) or k == steps - 1:
                progress(f"[demo] day {t1 / 86400:5.1f}/{self.days}  events posted "
                         f"{sum(self.ledger.posted.values()):6d}  emails received "
                         f"{self.mailbox.count():5d}  opens {len(self.ledger.opened):5d}  "
                         f"clicks {len(self.ledger.clicked):4d}  CRM tasks "
                         f"{len(self.tasks):3d}  ({time.monotonic() - started:4.0f}s)")
        # the last step's emails are read too, and the pipeline settles once more
        await self.react(steps * self.step)
        await self.settler.wait(limit=self.settle_timeout)
        self.ledger.mails, self.ledger.tasks = self.mailbox.count(), len(self.tasks)
        return self.ledger

    async def advance_to(self, epoch: float) -> None:
        seconds = epoch - (time.time() + self.clock.offset)
        if seconds <= 0:
            return
        r = await self.client.post(f"{self.ep.orchestrator}/v1/admin/clock/advance",
                                   json={"seconds": seconds},
                                   headers={"Authorization": f"Bearer {self.ep.admin_token}"})
        r.raise_for_status()
        self.clock.offset = float(r.json()["offset_seconds"])

    async def react(self, t: float) -> None:
        mails = self.mailbox.since(self._mail_seen)
        self._mail_seen += len(mails)
        gate = asyncio.Semaphore(16)

        async def one(mail: Mail) -> None:
            async with gate:
                await self.read(mail)

        await asyncio.gather(*(one(mail) for mail in mails))
        tasks = self.tasks[self._tasks_seen:]
        self._tasks_seen += len(tasks)
        for task in tasks:  # sales works the hand-offs of sales-qualified leads
            lead_id = str(task.get("lead_id"))
            if lead_id in self.states and task.get("program_id") == HANDOFF:
                self.states[lead_id] = p.handed_off(self.states[lead_id], t)

    async def read(self, mail: Mail) -> None:
        lead_id = self.by_email.get(mail.to)
        if lead_id is None:
            self.ledger.unknown_recipients += 1
            return
        reaction, self.states[lead_id] = p.react(self.by_id[lead_id], self.states[lead_id],
                                                 mail.message_id, self.seed)
        if reaction.opened and mail.open_url:
            await self.follow("open", mail.open_url, 200)
            self.ledger.opened[mail.message_id] = lead_id
        if reaction.clicked and mail.click_urls:
            await self.follow("click", mail.click_urls[0], 302)
            self.ledger.clicked[mail.message_id] = lead_id
        if reaction.unsubscribed and mail.unsubscribe_url:
            await self.follow("unsubscribe", mail.unsubscribe_url, 200,
                              body=b"List-Unsubscribe=One-Click")
            self.ledger.unsubscribed[mail.message_id] = lead_id

    async def follow(self, what: str, url: str, expect: int, body: bytes | None = None) -> None:
        if body is None:
            r = await self.client.get(url, follow_redirects=False)
        else:
            r = await self.client.post(url, content=body, headers={
                "Content-Type": "application/x-www-form-urlencoded"})
        if r.status_code != expect:
            self.ledger.follow_errors[f"{what} {r.status_code}"] += 1

    async def post(self, k: int, t0: float, t1: float) -> None:
        batch: list[dict[str, Any]] = []
        for lead in self.leads:
            if lead.arrives >= t1:
                break  # sorted by arrival
            events, self.states[lead.lead_id] = p.plan(lead, self.states[lead.lead_id], t0, t1,
                                                       self.seed)
            for i, ev in enumerate(events):
                batch.append(self.cloudevent(lead.lead_id, f"{k}-{i}", ev))
                if ev.type == "crm.deal_won":
                    self.ledger.won[lead.lead_id] = float(ev.data["amount"])
        for i in range(0, len(batch), BATCH):
            chunk = batch[i:i + BATCH]
            r = await self.client.post(
                f"{self.ep.ingest}/v1/events", content=orjson.dumps(chunk),
                headers={"Authorization": f"Bearer {self.ep.api_key}",
                         "Content-Type": "application/cloudevents-batch+json"})
            if r.status_code != 202:
                raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:500]}")
            self.ledger.posted.update(e["type"] for e in chunk)

    def cloudevent(self, lead_id: str, n: str, ev: p.SimEvent) -> dict[str, Any]:
        return p.cloudevent(lead_id, n, ev, self.start)
