"""`nurture-scoring score`: score recorded events as the worker does, without Kafka, and write
what the worker would publish, one JSON line per input line, in order (a blank line stays
blank, so line numbers agree):

- a record of `nurture.scored-events.v1` (`ScoredEvent`) for an event it scores;
- the same line, unchanged, for a line that already is a scored-event record;
- a record of `nurture.deadletter.v1` (`DeadLetter`, with the reason and the original bytes) for
  a line the worker would dead-letter; its origin offset is the line number.

Each line goes through the worker's own record function (`service_layer/handlers.py`:
`Processor.process`), with each lead's state kept in memory, so what comes out is what the
services would compute. `nurture-orchestrator simulate` reads this output (it runs this command
for plain events), and it can be piped: `nurture-scoring score --events e.jsonl | ...`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from schemas.records import DeadLetter, ScoredEvent
from schemas.vocabulary import event_epoch
from services.common.cli import open_input, reader_gone
from services.common.kafka.deadletter import Origin
from services.common.kafka.topics import Topics
from services.scoring.service_layer.handlers import Processor, Result

ORIGIN_TOPIC = "file"


class NotScored(ValueError):
    """The worker would dead-letter this event; the message is its reason."""


@dataclass
class Scorer:
    """The worker's record function over a stream of events, the leads' states in memory."""

    processor: Processor
    states: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def from_files(cls, paths: Sequence[str]) -> Scorer:
        """The models of these files or directories (raises ModelFileError)."""
        from services.scoring.adapters.model_files import load_models

        return cls(Processor(load_models(paths), Topics("")))

    def process(self, value: bytes, offset: int) -> Result:
        """What the worker does with a record holding `value`; the record's own timestamp is
        the event's time (what ingest stamps when it publishes)."""
        try:
            event = orjson.loads(value)
            at = event_epoch(event["time"]) if isinstance(event, dict) and "time" in event \
                else 0.0
            key = str(event.get("subject", "")).encode() if isinstance(event, dict) else b""
        except (orjson.JSONDecodeError, ValueError):
            at, key = 0.0, b""
        result = self.processor.process(
            key=key, value=value, origin=Origin(ORIGIN_TOPIC, 0, offset),
            timestamp_ms=int(at * 1000), state=self.states.get(key),
            now=datetime.fromtimestamp(at, UTC))
        if result.erase:
            self.states.pop(key, None)
        elif result.state is not None:
            self.states[key] = result.state
        return result

    def score(self, event: dict[str, Any], offset: int = 0) -> ScoredEvent:
        """The ScoredEvent the worker would publish for `event`; NotScored (with the worker's
        reason) if it would dead-letter it instead."""
        result = self.process(orjson.dumps(event), offset)
        (out,) = result.out
        if result.outcome == "dead_lettered":
            raise NotScored(DeadLetter.from_bytes(out.value).error)
        return ScoredEvent.from_bytes(out.value)


def is_scored_record(line: bytes) -> bool:
    doc = orjson.loads(line)
    return isinstance(doc, dict) and isinstance(doc.get("event"), dict) and "score" in doc


def score_stream(scorer: Scorer, lines: IO[bytes], out: IO[bytes], *,
                 line_buffered: bool = False) -> int:
    """Score every line of `lines` into `out`, one output line per input line; the number of
    lines dead-lettered. `line_buffered`: each output line is flushed at once."""
    dead = 0
    for number, line in enumerate(iter(lines.readline, b""), start=1):
        dead += _score_line(scorer, line.strip(), number, out)
        if line_buffered:
            out.flush()
    out.flush()
    return dead


def _score_line(scorer: Scorer, line: bytes, number: int, out: IO[bytes]) -> bool:
    """One input line's output line; True if it was dead-lettered."""
    if not line:  # kept, so that output line numbers are input line numbers
        out.write(b"\n")
        return False
    try:
        if is_scored_record(line):
            out.write(line + b"\n")
            return False
    except orjson.JSONDecodeError:
        pass  # the worker dead-letters it, with the reason
    result = scorer.process(line, number)
    out.writelines(o.value + b"\n" for o in result.out)
    return result.outcome == "dead_lettered"


def run_score(model_paths: list[str], events_path: str, *, line_buffered: bool = False) -> int:
    from services.scoring.adapters.model_files import load_or_report

    models = load_or_report(model_paths)
    stream = open_input(events_path, "nurture-scoring score") if models is not None else None
    if models is None or stream is None:
        return 2
    with stream:
        try:
            dead = score_stream(Scorer(Processor(models, Topics(""))), stream, sys.stdout.buffer,
                                line_buffered=line_buffered)
        except BrokenPipeError:
            return reader_gone()
    if dead:
        print(f"nurture-scoring score: {dead:,} line(s) dead-lettered (their records say why)",
              file=sys.stderr)
    return 0
