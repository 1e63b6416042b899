"""`nurture-orchestrator simulate`: run programs over recorded events (JSON lines of
`nurture.scored-events.v1` records, or plain CloudEvents) with simulated time, and report what
would have been sent, held and why — before anything reaches a real inbox.

Plain CloudEvents are scored first by `nurture-scoring score` (the scoring worker's own record
function, in a child process: the two services share records, not code), so thresholds, stage
changes and score-triggered programs appear as they would in the services. Events go to it one
at a time, in the order of simulated time, so that when decay alone takes a score across a
threshold the simulation asks it, as the orchestrator asks scoring, with a `lead.score_due`
event. Scored-event records keep the scores they carry; what scoring would dead-letter is
reported with its reason.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.cloudevent import score_due_event
from schemas.normalize import normalized
from schemas.records import DeadLetter, ModelScore, ScoredEvent
from schemas.records.base import describe
from schemas.vocabulary import event_epoch
from services.common.cli import open_input, reader_gone
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import ScoreDue
from services.orchestrator.domain.simulate import Simulation

PROGRESS_EVERY_SECONDS = 5.0
SHOWN_BAD_LINES = 5
SHOWN_LEADS = 5

Line = tuple[dict[str, Any], Mapping[str, ModelScore], float]


def _line(line: bytes) -> Line:
    """A scored-event record (read through the `ScoredEvent` model), a dead-letter record
    (ValueError with its reason) or a plain CloudEvent (no scores): the event, the scores
    after it and its time; ValueError saying why not."""
    doc = orjson.loads(line)
    event, scores = doc, {}
    if isinstance(doc, dict) and "event" in doc:
        try:
            scored = ScoredEvent.model_validate(doc)
        except ValidationError as exc:  # its field paths, never values (they may be personal)
            raise ValueError(f"not a ScoredEvent: {describe(exc)}") from None
        event, scores = scored.event, scored.score.models
    elif isinstance(doc, dict) and "error" in doc and "consumer" in doc:
        raise ValueError(f"scoring would dead-letter it: {DeadLetter.from_bytes(line).error}")
    if not isinstance(event, dict) or not isinstance(event.get("subject"), str):
        raise ValueError("not an event with a subject")
    return normalized(event), scores, event_epoch(event.get("time"))


def _records(stream: Iterator[bytes], bad: list[str],
             scored: Callable[[bytes], bytes] | None = None) -> Iterator[Line]:
    """The lines read (through `scored`, the scorer, first if given), each as it is needed."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield _line(line if scored is None else scored(line))
        except (orjson.JSONDecodeError, ValueError, KeyError) as exc:
            bad.append(f"line {number}: {exc}")


def _plain(line: bytes) -> tuple[float | None, str | None]:
    """The time (if usable) and the lead of a plain event's line; (None, None) for anything
    else (a scored-event record carries its scores: the scorer only passes it on)."""
    try:
        doc = orjson.loads(line)
        if not isinstance(doc, dict) or "event" in doc:
            return None, None
        subject = doc.get("subject")
        return event_epoch(doc.get("time")), subject if isinstance(subject, str) else None
    except (orjson.JSONDecodeError, ValueError):
        return None, None


class _Reported(Exception):
    """The input could not be opened, and stderr was told why."""


class _Scorer:
    """`nurture-scoring score --line-buffered` in a child process: a line in, its line out."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.stdin, self.stdout = proc, proc.stdin, proc.stdout
        self.scored: set[str] = set()  # the leads it scored (it holds their state)

    def score(self, line: bytes) -> bytes:
        self.stdin.write(line.rstrip(b"\r\n") + b"\n")
        self.stdin.flush()
        answer = self.stdout.readline()
        if not answer:
            raise OSError(f"nurture-scoring score stopped (exit code {self.proc.wait()})")
        return answer

    def rescore(self, lead_id: str, due: ScoreDue) -> Line | None:
        """The scored event scoring answers to `lead.score_due` (None: it would not score it,
        or the lead's scores came recorded: the scorer holds no state to age)."""
        if lead_id not in self.scored:
            return None
        try:
            return _line(self.score(orjson.dumps(score_due_event(lead_id, due.model, due.at))))
        except ValueError:
            return None


@contextlib.contextmanager
def _source(events_path: str,
            scoring: Sequence[str] | None) -> Iterator[tuple[Iterator[bytes], _Scorer | None]]:
    """The lines of the file (or stdin), and `nurture-scoring score` with these models in a
    child process to score them (None: not scored)."""
    stream = open_input(events_path, "nurture-orchestrator simulate")
    if stream is None:
        raise _Reported
    if scoring is None:
        with stream:
            yield iter(stream.readline, b""), None
        return
    models = [arg for path in scoring for arg in ("--model", path)]
    with stream, subprocess.Popen(
            [sys.executable, "-m", "services.scoring", "score", "--events", "-",
             "--line-buffered", *models], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        yield iter(stream.readline, b""), _Scorer(proc)
        proc.stdin.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise OSError(f"nurture-scoring score exited with {proc.returncode}")


def simulate(decider: Decider, events_path: str, *, scoring: Sequence[str] | None,
             tail_days: float, as_json: bool, quiet: bool) -> int:
    """Run the dry run and print its report; the exit code. `scoring`: the model files plain
    events are scored with (None: not scored)."""
    if scoring is not None and events_path != "-" and not Path(events_path).is_file():
        print(f"nurture-orchestrator simulate: cannot read {events_path}: no such file",
              file=sys.stderr)
        return 2
    bad: list[str] = []
    started = last_note = time.perf_counter()
    try:
        with _source(events_path, scoring) as (stream, scorer):
            sim = Simulation(decider, rescore=None if scorer is None else scorer.rescore)

            def scored(line: bytes) -> bytes:
                """Decay due before the event is asked first, as the services would."""
                assert scorer is not None
                when, lead_id = _plain(line)
                if when is not None:
                    sim.run_until(when)
                if lead_id is not None:
                    scorer.scored.add(lead_id)
                return scorer.score(line)
            for event, score, when in _records(stream, bad, None if scorer is None else scored):
                sim.feed(event, score, when)
                now = time.perf_counter()
                if not quiet and now - last_note > PROGRESS_EVERY_SECONDS:
                    last_note = now
                    print(f"... {sim.events:,} events, {len(sim.leads):,} leads",
                          file=sys.stderr)
            sim.run_until(sim.clock + tail_days * 86400)  # decay may still ask the scorer
    except _Reported:
        return 2
    except OSError as exc:
        print(f"nurture-orchestrator simulate: {exc}", file=sys.stderr)
        return 2
    report = sim.report() | {
        "scoring_models": list(scoring) if scoring is not None else None,
        "bad_lines": len(bad), "seconds": round(time.perf_counter() - started, 3)}
    text = orjson.dumps(report | {"bad": bad[:SHOWN_BAD_LINES]}, option=orjson.OPT_INDENT_2
                        ).decode() if as_json else render(report, bad, tail_days)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        return reader_gone()
    return 0


def render(report: dict[str, Any], bad: list[str], tail_days: float) -> str:
    scoring = (f"scored by nurture-scoring with {', '.join(report['scoring_models'])} (models "
               f"seen: {', '.join(report['models_seen']) or 'none'})"
               if report["scoring_models"] is not None
               else "NOT scored (--no-scoring): plain events carry no scores, so threshold "
                    "and score-stage triggers cannot fire")
    lines = [f"Simulated {report['events']:,} events of {report['leads']:,} leads "
             f"(+{tail_days:g} days after the last) in {report['seconds']}s; "
             f"{report['duplicates']:,} duplicates, {len(bad):,} unreadable lines",
             f"plain events {scoring}"]
    lines += [f"  {line}" for line in bad[:SHOWN_BAD_LINES]]
    lines.append("stages now: " + ", ".join(f"{k} {v:,}"
                                            for k, v in report["leads_by_stage"].items()))
    lines += [f"score thresholds crossed up: {k} {v['crossings']:,} times by {v['leads']:,} leads"
              for k, v in report["crossed_up"].items()]
    for pid, p in report["programs"].items():
        lines.append(f"\n== {pid}: enrolled {p['enrolled']:,}, still active {p['active']:,}")
        rows = [("entered", why, n) for why, n in p["entered_because"].items()]
        rows += [("skipped", why, n) for why, n in p["skipped"].items()]
        rows += [("sent", step, n) for step, n in p["sent_by_step"].items()]
        rows += [("held", why, n) for why, n in p["held"].items()]
        rows += [("exit", why, n) for why, n in p["exits"].items()]
        lines += [f"   {kind:<8}{what:<40} {n:>7,}" for kind, what, n in rows]
    entries = report["entries"]
    if entries:
        lines.append(f"\nwhich programs each lead entered, and why (first {SHOWN_LEADS} of "
                     f"{len(entries):,} leads; --json lists all):")
        for lead_id, entered in list(entries.items())[:SHOWN_LEADS]:
            lines.append(f"  {lead_id}")
            lines += [f"    {e['at'][:16]}Z  {e['program']:<22} {e['why']}" for e in entered]
    return "\n".join(lines)
