"""The load of a fault run, behaving like a real client: each lead is one batch of
`EVENTS_PER_LEAD` events (a CRM upsert with an email address, which enrolls the lead in the
chaos program, and two page views), posted to ingest and retried with the same event ids on
anything but a 2xx or a 4xx that says the request itself is wrong (a 503 during a broker outage,
a refused connection while ingest restarts). Only a 2xx counts as accepted.

The clock ticker advances the orchestrator's controllable clock a day at a time, so the
program's waits elapse while faults are being injected."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

EVENTS_PER_LEAD = 3
SOURCE = "https://chaos.example.test"
DAY = 86400.0
EMAIL_DOMAIN = "chaos.example.test"


def lead_events(lead_id: str) -> list[dict[str, Any]]:
    """The events of one lead (no personal data beyond a made-up address). The address is
    `<lead id>@chaos.example.test`, so the SMTP peer can tell whom each email went to."""
    def event(k: int, etype: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"specversion": "1.0", "id": f"{lead_id}-e{k}", "source": SOURCE,
                "type": etype, "subject": lead_id, "data": data}
    return [event(0, "crm.lead_upserted", {"email": f"{lead_id}@{EMAIL_DOMAIN}",
                                            "first_name": "Chaos"}),
            event(1, "web.page_viewed", {"url": f"{SOURCE}/docs", "path": "/docs"}),
            event(2, "web.page_viewed", {"url": f"{SOURCE}/blog", "path": "/blog"})]


@dataclass
class Load:
    """Posts leads at `rate` per second until `stop()`, then finishes the ones in flight."""

    ingest_url: str
    api_key: str
    run_id: str
    rate: float = 2.0
    give_up_seconds: float = 600.0
    leads: list[str] = field(default_factory=list)
    accepted: dict[str, float] = field(default_factory=dict)  # "source\x1fid" -> when
    rejected: list[tuple[str, int]] = field(default_factory=list)
    retries: int = 0
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def accepted_times(self) -> list[float]:
        return list(self.accepted.values())

    async def run(self, *, min_leads: int = 0, max_leads: int | None = None) -> None:
        inflight: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(timeout=15) as client:
            n = 0
            while (not self._stopping.is_set() or n < min_leads) and \
                    (max_leads is None or n < max_leads):
                lead = f"chaos-{self.run_id}-{n:05d}"
                self.leads.append(lead)
                task = asyncio.create_task(self._post(client, lead))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                n += 1
                await asyncio.sleep(1 / self.rate)
            if inflight:
                await asyncio.gather(*inflight)

    async def _post(self, client: httpx.AsyncClient, lead: str) -> None:
        events = lead_events(lead)
        deadline = time.monotonic() + self.give_up_seconds
        delay = 0.5
        while time.monotonic() < deadline:
            try:
                r = await client.post(
                    f"{self.ingest_url}/v1/events", json=events,
                    headers={"Authorization": f"Bearer {self.api_key}",
                             "Content-Type": "application/cloudevents-batch+json"})
            except httpx.TransportError:
                r = None
            if r is not None and 200 <= r.status_code < 300:
                now = time.monotonic()
                for e in events:
                    self.accepted.setdefault(f"{e['source']}\x1f{e['id']}", now)
                return
            if r is not None and 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                self.rejected.append((lead, r.status_code))
                return
            self.retries += 1
            wait = delay
            if r is not None:
                with contextlib.suppress(ValueError):
                    wait = max(wait, float(r.headers.get("retry-after", "0")))
            await asyncio.sleep(min(wait, 5.0))
            delay = min(delay * 2, 5.0)


async def advance_clock(orchestrator_url: str, token: str, seconds: float, *,
                        give_up_seconds: float = 300.0) -> None:
    """Move the orchestrator's clock, retrying while it is down (killed, or its database is)."""
    deadline = time.monotonic() + give_up_seconds
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                r = await client.post(f"{orchestrator_url}/v1/admin/clock/advance",
                                      json={"seconds": seconds, "wait_seconds": 0},
                                      headers={"Authorization": f"Bearer {token}"})
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("could not advance the orchestrator's clock")
            await asyncio.sleep(1)


async def tick_clock(orchestrator_url: str, token: str, *, every: float,
                     stop: asyncio.Event) -> int:
    """Advance a day every `every` seconds until `stop`; how many days it advanced."""
    days = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            break
        await advance_clock(orchestrator_url, token, DAY)
        days += 1
    return days
