"""The counting of a fault run (pure): what was expected, what each stage saw, the verdict and
the table. No I/O here: the run feeds it observations, the tests feed it made-up ones."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STAGES = ("accepted", "scored", "processed", "delivered")


@dataclass(frozen=True, slots=True)
class Plan:
    """The load: `leads` leads, `events_per_lead` events each, `touches` messages each."""

    leads: int
    events_per_lead: int
    touches: int

    @property
    def events(self) -> int:
        return self.leads * self.events_per_lead

    @property
    def messages(self) -> int:
        return self.leads * self.touches


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault: when it began, when the system was restored (restart done), and the
    first time after that each stage made progress (None: it did not)."""

    name: str
    started_at: float
    restored_at: float
    progress: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def recovery_seconds(self) -> float | None:
        """Seconds from restore until every watched stage moved again; None if one never did."""
        if not self.progress or any(t is None for t in self.progress.values()):
            return None
        return max(0.0, max(t for t in self.progress.values() if t is not None)
                   - self.restored_at)


def first_after(times: Sequence[float], moment: float) -> float | None:
    """The first observation time strictly after `moment` (times need not be sorted)."""
    later = [t for t in times if t > moment]
    return min(later) if later else None


def duplicates(received: Iterable[str]) -> dict[str, int]:
    """Message ids received more than once, with how many extra times."""
    return {mid: n - 1 for mid, n in Counter(received).items() if n > 1}


@dataclass(frozen=True, slots=True)
class Observed:
    """What the run saw. Id collections are of the load's own events / expected messages."""

    accepted: set[str]
    scored: set[str]
    processed: set[str]
    expected_messages: set[str]
    received: list[str]  # every accepted delivery at the peers, in order, repeats included
    dead_letters: Mapping[str, int]  # reason -> count
    faults: Sequence[FaultRecord]
    scored_records: int = 0  # records of the load's events on the scored topic (repeats incl.)


def verdict(plan: Plan, seen: Observed) -> dict[str, Any]:
    """The figures and whether the run passed: every event accepted, scored and processed,
    every expected message received exactly once, nothing unexpected, every fault recovered."""
    received = set(seen.received)
    dups = duplicates(seen.received)
    unexpected = received - seen.expected_messages
    figures: dict[str, Any] = {
        "events_sent": plan.events,
        "events_accepted": len(seen.accepted),
        "events_scored": len(seen.accepted & seen.scored),
        "events_processed": len(seen.accepted & seen.processed),
        "scored_redeliveries": max(0, seen.scored_records - len(seen.scored)),
        "messages_expected": plan.messages,
        "messages_planned": len(seen.expected_messages),
        "messages_received": len(received & seen.expected_messages),
        "messages_unexpected": len(unexpected),
        "duplicates": sum(dups.values()),
        "dead_letters": dict(sorted(seen.dead_letters.items())),
        "faults": [{"fault": f.name, "recovery_seconds": _round(f.recovery_seconds),
                    "outage_seconds": _round(f.restored_at - f.started_at),
                    "progress": {k: _round(None if v is None else v - f.restored_at)
                                 for k, v in f.progress.items()}} for f in seen.faults],
    }
    problems = []
    if len(seen.accepted) != plan.events:
        problems.append(f"{plan.events - len(seen.accepted)} events never accepted")
    for stage in ("scored", "processed"):
        if figures[f"events_{stage}"] != len(seen.accepted):
            problems.append(f"{len(seen.accepted) - figures[f'events_{stage}']} accepted events "
                            f"not {stage}")
    if len(seen.expected_messages) != plan.messages:
        problems.append(f"{len(seen.expected_messages)} messages planned by the orchestrator, "
                        f"{plan.messages} expected")
    if figures["messages_received"] != plan.messages:
        problems.append(f"{plan.messages - figures['messages_received']} messages not received")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected messages received")
    if dups:
        problems.append(f"{figures['duplicates']} duplicate deliveries")
    if seen.dead_letters:
        problems.append(f"{sum(seen.dead_letters.values())} dead letters")
    problems += [f"{f.name} did not recover" for f in seen.faults if f.recovery_seconds is None]
    figures["problems"] = problems
    figures["passed"] = not problems
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def table(figures: Mapping[str, Any]) -> str:
    """The figures as a Markdown table (printed at the end, pasted into the docs)."""
    rows = [
        ("events sent / accepted (2xx)", f"{figures['events_sent']} / "
                                         f"{figures['events_accepted']}"),
        ("events scored / processed", f"{figures['events_scored']} / "
                                      f"{figures['events_processed']}"),
        ("scored-topic redeliveries (deduped)", str(figures["scored_redeliveries"])),
        ("messages expected / received", f"{figures['messages_expected']} / "
                                         f"{figures['messages_received']}"),
        ("unexpected messages", str(figures["messages_unexpected"])),
        ("duplicate deliveries", str(figures["duplicates"])),
        ("dead letters", ", ".join(f"{k}: {v}" for k, v in figures["dead_letters"].items())
         or "0"),
    ]
    for fault in figures["faults"]:
        secs = fault["recovery_seconds"]
        rows.append((f"recovery: {fault['fault']}", "did not recover" if secs is None else
                     f"{secs:.1f} s (fault + restart took {fault['outage_seconds']:.1f} s)"))
    rows.append(("result", "PASS" if figures["passed"] else
                 "FAIL: " + "; ".join(figures["problems"])))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
