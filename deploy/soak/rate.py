"""The endurance run's default rate: half the pipeline's measured maximum.

`make bench` records the end-to-end maximum (bench/e2e.py: the highest sustained step, in
events/s, of a load where a share of the events leads to an email) in bench/results.json. The
soak's load is another mix (each lead: 3 events and 3 messages), so half of the maximum is
taken in both of its dimensions, events/s and sends/s, and the one that binds gives the leads/s.
Without a recorded maximum the rate is FALLBACK (the fault run's)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.local.stack import ROOT

RESULTS = ROOT / "bench" / "results.json"
FALLBACK = 2.0  # leads per second
SHARE = 0.5  # of the measured maximum


def default_rate(results: Mapping[str, Any] | None, *, events_per_lead: int,
                 messages_per_lead: int) -> tuple[float, str]:
    """Leads per second at SHARE of the newest full (not `--quick`) end-to-end maximum in
    `results`, and a sentence saying where it came from."""
    newest: tuple[str, str, float, float | None] | None = None
    for label, run in ((results or {}).get("runs") or {}).items():
        e2e = (run.get("components") or {}).get("e2e") or {}
        measured = e2e.get("measured") or {}
        top = measured.get("max_sustained_events_per_s")
        if run.get("quick") or not top:
            continue
        step = next((s for s in measured.get("steps", [])
                     if s.get("offered_events_per_s") == top and s.get("events")), None)
        share = step["sends"] / step["events"] if step else None
        date = str(e2e.get("date", ""))
        if newest is None or date > newest[0]:
            newest = (date, label, float(top), share)
    if newest is None:
        return FALLBACK, (f"{FALLBACK:g} leads/s, the default: bench/results.json has no "
                          "end-to-end maximum")
    date, label, top, share = newest
    by_events = SHARE * top / events_per_lead
    by_sends = SHARE * top * share / messages_per_lead if share else by_events
    rate = max(0.1, round(min(by_events, by_sends), 1))
    sends = f", {share:.0%} of them leading to a send" if share else ""
    return rate, (f"{rate:g} leads/s: {SHARE:.0%} of the measured end-to-end maximum "
                  f"({top:g} events/s{sends}; bench/results.json, run '{label}' of "
                  f"{date[:10]}) for leads of {events_per_lead} events and "
                  f"{messages_per_lead} messages each")


def measured_rate(*, events_per_lead: int, messages_per_lead: int,
                  path: Path = RESULTS) -> tuple[float, str]:
    """default_rate of the recorded benchmarks, if any."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        results = None
    return default_rate(results, events_per_lead=events_per_lead,
                        messages_per_lead=messages_per_lead)
