"""The counting of a fault run (pure): what was expected, what each stage saw, the verdict and
the table. No I/O here: the run feeds it observations, the tests feed it made-up ones.

Messages are checked per (lead, step), not in total: every lead of the load must get exactly
one delivery of each send step of the program, on that step's channel, and nothing else. A lost
touch of one lead and an extra touch of another do not cancel out."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STAGES = ("accepted", "scored", "processed", "delivered")
# Channels whose receivers dedupe on the message id (`webhook-id`, Standard Webhooks): a repeat
# of the same id is the documented at-least-once window (a reply lost after the receiver took
# the call), reported as a raw repeat but not counted as a second delivery. An email repeated
# under the same id reaches the person twice: it counts.
DEDUPED_BY_RECEIVER = frozenset({"webhook"})
EXAMPLES = 5  # (lead, step) pairs listed per kind of problem, for the diagnosis


@dataclass(frozen=True, slots=True)
class Plan:
    """The load: these `leads`, `events_per_lead` events each, and one message per lead for
    each of `steps` ((step id, channel), the program's send steps)."""

    leads: Sequence[str]
    events_per_lead: int
    steps: Sequence[tuple[str, str]]

    @property
    def events(self) -> int:
        return len(self.leads) * self.events_per_lead

    @property
    def messages(self) -> int:
        return len(self.leads) * len(self.steps)

    def expected(self) -> dict[tuple[str, str], str]:
        """(lead, step) -> channel, for every message the run must see."""
        return {(lead, step): kind for lead in self.leads for step, kind in self.steps}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message a peer accepted: its channel, message id, and the lead and step it was for
    as far as the peer could tell (None: resolved from the dispatch command of that id)."""

    kind: str
    message_id: str
    lead: str | None = None
    step: str | None = None


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
    """Ids received more than once, with how many extra times."""
    return {mid: n - 1 for mid, n in Counter(received).items() if n > 1}


@dataclass(frozen=True, slots=True)
class Observed:
    """What the run saw. Id collections are of the load's own events."""

    accepted: set[str]
    scored: set[str]
    processed: set[str]
    planned: Mapping[str, tuple[str, str]]  # message id -> (lead, step), from the commands
    received: Sequence[Delivery]  # every accepted delivery at the peers, repeats included
    dead_letters: Mapping[str, int]  # reason -> count
    faults: Sequence[FaultRecord]
    scored_records: int = 0  # records of the load's events on the scored topic (repeats incl.)


def messages(plan: Plan, planned: Mapping[str, tuple[str, str]],
             received: Sequence[Delivery]) -> dict[str, dict[str, Any]]:
    """Per channel: expected, received (expected pairs delivered at least once), lost,
    duplicates (deliveries beyond the first for a pair), unexpected (deliveries for a pair that
    is not expected on that channel, or that cannot be tied to a lead and step), raw repeats
    (receipts of a message id already received) and a few example pairs of each problem."""
    expected = plan.expected()
    kinds = sorted({*expected.values(), *(d.kind for d in received)})
    raw = Counter((d.kind, d.message_id) for d in received)
    first: dict[tuple[str, str], Delivery] = {}
    for d in received:
        first.setdefault((d.kind, d.message_id), d)
    counted: Counter[tuple[str, str, str]] = Counter()  # (kind, lead, step) -> deliveries
    unexpected: dict[str, list[str]] = defaultdict(list)
    for (kind, mid), n in raw.items():
        lead_step = resolve(first[(kind, mid)], planned)
        if lead_step is None:
            unexpected[kind] += [f"message {mid}: no lead/step"] * n
            continue
        if expected.get(lead_step) != kind:
            unexpected[kind] += [f"{lead_step[0]}/{lead_step[1]}"] * n
            continue
        counted[(kind, *lead_step)] += 1 if kind in DEDUPED_BY_RECEIVER else n
    figures: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        pairs = sorted(p for p, k in expected.items() if k == kind)
        lost = [p for p in pairs if counted[(kind, *p)] == 0]
        dups = [p for p in pairs if counted[(kind, *p)] > 1]
        figures[kind] = {
            "expected": len(pairs), "received": len(pairs) - len(lost), "lost": len(lost),
            "duplicates": sum(counted[(kind, *p)] - 1 for p in dups),
            "unexpected": len(unexpected[kind]),
            "raw_repeats": sum(n - 1 for (k, _), n in raw.items() if k == kind),
            "examples": {"lost": [f"{lead}/{step}" for lead, step in lost[:EXAMPLES]],
                         "duplicates": [f"{lead}/{step}" for lead, step in dups[:EXAMPLES]],
                         "unexpected": sorted(set(unexpected[kind]))[:EXAMPLES]}}
    return figures


def resolve(peer: Delivery, planned: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    """The (lead, step) of a delivery: what the peer recorded, completed by the command."""
    command = planned.get(peer.message_id)
    lead = peer.lead or (command[0] if command else None)
    step = peer.step or (command[1] if command else None)
    return None if lead is None or step is None else (lead, step)


def verdict(plan: Plan, seen: Observed) -> dict[str, Any]:
    """The figures and whether the run passed: every event accepted, scored and processed,
    exactly one delivery per expected (lead, step), nothing unexpected, every fault
    recovered."""
    per_kind = messages(plan, seen.planned, seen.received)
    expected = plan.expected()

    def total(key: str) -> int:
        return sum(int(k[key]) for k in per_kind.values())
    planned_pairs = set(seen.planned.values())
    figures: dict[str, Any] = {
        "events_sent": plan.events,
        "events_accepted": len(seen.accepted),
        "events_scored": len(seen.accepted & seen.scored),
        "events_processed": len(seen.accepted & seen.processed),
        "scored_redeliveries": max(0, seen.scored_records - len(seen.scored)),
        "messages_expected": plan.messages,
        "messages_planned": len(seen.planned),
        "messages_received": total("received"),
        "messages_lost": total("lost"),
        "messages_unexpected": total("unexpected"),
        "duplicates": total("duplicates"),
        "raw_repeats": total("raw_repeats"),
        "messages": per_kind,
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
    if len(seen.planned) != plan.messages or planned_pairs != set(expected):
        problems.append(f"{len(seen.planned)} messages planned by the orchestrator for "
                        f"{len(planned_pairs & set(expected))} of the {plan.messages} expected "
                        f"(lead, step)")
    for kind, k in per_kind.items():
        for what in ("lost", "duplicates", "unexpected"):
            if k[what]:
                problems.append(f"{k[what]} {kind} {_WORDS[what]} "
                                f"(e.g. {', '.join(k['examples'][what])})")
    if seen.dead_letters:
        problems.append(f"{sum(seen.dead_letters.values())} dead letters")
    problems += [f"{f.name} did not recover" for f in seen.faults if f.recovery_seconds is None]
    figures["problems"] = problems
    figures["passed"] = not problems
    return figures


_WORDS = {"lost": "messages lost", "duplicates": "duplicate deliveries",
          "unexpected": "unexpected deliveries"}


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
        ("messages expected / planned / received", f"{figures['messages_expected']} / "
                                                   f"{figures['messages_planned']} / "
                                                   f"{figures['messages_received']}"),
    ]
    for kind, k in figures["messages"].items():
        rows.append((f"{kind}: expected / received (lead, step)",
                     f"{k['expected']} / {k['received']}"))
        rows.append((f"{kind}: lost / duplicates / unexpected",
                     f"{k['lost']} / {k['duplicates']} / {k['unexpected']}"))
        if kind in DEDUPED_BY_RECEIVER:
            rows.append((f"{kind}: raw repeats (same id, deduped by receivers)",
                         str(k["raw_repeats"])))
    rows.append(("dead letters", ", ".join(f"{k}: {v}" for k, v in
                                           figures["dead_letters"].items()) or "0"))
    for fault in figures["faults"]:
        secs = fault["recovery_seconds"]
        rows.append((f"recovery: {fault['fault']}", "did not recover" if secs is None else
                     f"{secs:.1f} s (fault + restart took {fault['outage_seconds']:.1f} s)"))
    return markdown_table(rows, figures, heading="figure")


def markdown_table(rows: list[tuple[str, str]], figures: Mapping[str, Any], *,
                   heading: str) -> str:
    """`rows` (figure, value) and the run's verdict as a Markdown table, names padded."""
    rows = [*rows, ("result", "PASS" if figures["passed"] else
                    "FAIL: " + "; ".join(figures["problems"]))]
    width = max(len(r[0]) for r in rows)
    lines = [f"| {heading.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
