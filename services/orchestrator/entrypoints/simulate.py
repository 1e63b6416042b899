"""`nurture-orchestrator simulate`: run programs over recorded events (JSON lines of
`nurture.scored-events.v1` records, or plain CloudEvents) with simulated time, and report what
would have been sent, held and why — before anything reaches a real inbox."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson
from pydantic import ValidationError

from schemas.records import ModelScore, ScoredEvent
from schemas.records.base import describe
from schemas.vocabulary import event_epoch
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.simulate import Simulation

PROGRESS_EVERY_SECONDS = 5.0


def _line(line: bytes) -> tuple[dict[str, Any], Mapping[str, ModelScore], float]:
    """A scored-event record (read through the `ScoredEvent` model) or a plain CloudEvent (no
    scores): the event, the scores after it and its time; ValueError saying why not."""
    doc = orjson.loads(line)
    event, scores = doc, {}
    if isinstance(doc, dict) and "event" in doc:
        try:
            scored = ScoredEvent.model_validate(doc)
        except ValidationError as exc:  # its field paths, never values (they may be personal)
            raise ValueError(f"not a ScoredEvent: {describe(exc)}") from None
        event, scores = scored.event, scored.score.models
    if not isinstance(event, dict) or not isinstance(event.get("subject"), str):
        raise ValueError("not an event with a subject")
    return event, scores, event_epoch(event.get("time"))


def _records(stream: IO[bytes], bad: list[str]) -> Any:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield _line(line)
        except (orjson.JSONDecodeError, ValueError, KeyError) as exc:
            bad.append(f"line {number}: {exc}")


def simulate(decider: Decider, events_path: str, *, tail_days: float, as_json: bool,
             quiet: bool) -> int:
    try:
        stream = sys.stdin.buffer if events_path == "-" else open(events_path, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"nurture-orchestrator simulate: cannot read {events_path}: {exc.strerror}",
              file=sys.stderr)
        return 2
    sim, bad = Simulation(decider), list[str]()
    started = last_note = time.perf_counter()
    with stream:
        for event, score, when in _records(stream, bad):
            sim.feed(event, score, when)
            now = time.perf_counter()
            if not quiet and now - last_note > PROGRESS_EVERY_SECONDS:
                last_note = now
                print(f"... {sim.events:,} events, {len(sim.leads):,} leads", file=sys.stderr)
    sim.run_until(sim.clock + tail_days * 86400)
    report = sim.report() | {"bad_lines": len(bad),
                             "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print(f"Simulated {report['events']:,} events of {report['leads']:,} leads "
          f"(+{tail_days:g} days after the last) in {report['seconds']}s; "
          f"{report['duplicates']:,} duplicates, {len(bad):,} unreadable lines")
    for line in bad[:5]:
        print(f"  {line}")
    print("stages now: " + ", ".join(f"{k} {v:,}" for k, v in report["leads_by_stage"].items()))
    for pid, p in report["programs"].items():
        print(f"\n== {pid}: enrolled {p['enrolled']:,}, still active {p['active']:,}")
        for step, n in p["sent_by_step"].items():
            print(f"   sent   {step:<30} {n:>8,}")
        for why, n in p["held"].items():
            print(f"   held   {why:<30} {n:>8,}")
        for why, n in p["exits"].items():
            print(f"   exit   {why:<30} {n:>8,}")
    return 0
