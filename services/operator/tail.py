"""`nurture-ops tail`: read one of Nurture's topics, decoded through its contract, filtered.

    nurture-ops tail events --lead lead-42 --since 2h
    nurture-ops tail scored-events --type 'web.*' --follow
    nurture-ops tail dispatch --json | jq .record.template

Each record is decoded with its topic's model (`schemas/records/`; CloudEvents on the events
topic); one that does not decode is shown as unreadable, with the reason, never skipped. Without
`--follow` it reads up to the topics' end as it was at the start, so it always terminates."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.records import DeadLetter, RecordError, ScoredEvent, SendMessage, StageChanged
from services.common.cli import ends_quietly
from services.common.config.settings import KafkaSettings, load
from services.common.errors import ConfigError
from services.common.kafka.topics import Topics
from services.operator.options import SINCE_HELP, parse_since
from services.operator.reader import read_topic

Decoded = tuple[str, str, dict[str, Any]]  # lead id, type, the record as JSON


def _event(value: bytes) -> Decoded:
    event = orjson.loads(value)
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ValueError("not a CloudEvent (no type)")
    return str(event.get("subject", "")), event["type"], event


def _scored(value: bytes) -> Decoded:
    scored = ScoredEvent.from_bytes(value)
    return scored.lead_id, str(scored.event.get("type", "")), scored.model_dump(mode="json")


def _send(value: bytes) -> Decoded:
    command = SendMessage.from_bytes(value)
    return command.lead_id, f"send.{command.channel}", command.model_dump(mode="json")


def _stage(value: bytes) -> Decoded:
    change = StageChanged.from_bytes(value)
    return change.lead_id, f"stage.{change.to_stage}", change.model_dump(mode="json")


def _letter(value: bytes) -> Decoded:
    letter = DeadLetter.from_bytes(value)
    return "", f"deadletter.{letter.consumer}", letter.model_dump(mode="json")


DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    "events": _event, "scored_events": _scored, "dispatch": _send, "stages": _stage,
    "deadletter": _letter}
TOPIC_CHOICES = sorted(name.replace("_", "-") for name in DECODERS)


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    lead: str | None = None
    type: str | None = None  # a glob: web.*

    def admit(self, lead: str, kind: str) -> bool:
        return ((self.lead is None or lead == self.lead)
                and (self.type is None or fnmatch.fnmatchcase(kind, self.type)))


def show(record: ConsumerRecord[bytes, bytes], decode: Callable[[bytes], Decoded],
         filters: Filters) -> dict[str, Any] | None:
    """The line of one record (None when the filters leave it out); unreadable ones always."""
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    line: dict[str, Any] = {
        "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "partition": record.partition, "offset": record.offset,
        "key": record.key.decode(errors="replace") if record.key else None}
    try:
        lead, kind, body = decode(record.value or b"")
    except (RecordError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError too
        return line | {"unreadable": str(exc)}
    if not filters.admit(lead, kind):
        return None
    return line | {"lead": lead, "type": kind, "record": body}


def render(line: dict[str, Any]) -> str:
    where = f"{line['partition']}/{line['offset']}"
    if "unreadable" in line:
        return f"{line['time']}  {where:<10} UNREADABLE  {line['unreadable']}"
    return (f"{line['time']}  {where:<10} {line['lead'] or '-':<24} {line['type']:<28} "
            f"{orjson.dumps(line['record']).decode()[:200]}")


async def tail(kafka: KafkaSettings, args: argparse.Namespace, since: datetime | None,
               out: Callable[[str], None] = print) -> int:
    """Print the chosen records; how many were printed."""
    name = args.topic.replace("-", "_")
    topic, decode = getattr(Topics(kafka.topic_prefix), name), DECODERS[name]
    filters, shown = Filters(since, args.lead, args.type), 0
    async for record in read_topic(kafka, topic, since=since, follow=args.follow):
        line = show(record, decode, filters)
        if line is None:
            continue
        out(orjson.dumps(line).decode() if args.json else render(line))
        shown += 1
        if args.limit and shown >= args.limit:
            break
    return shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", choices=TOPIC_CHOICES, help="which topic (its prefix is "
                        "NURTURE_TOPIC_PREFIX)")
    parser.add_argument("--since", help=SINCE_HELP + " (by the record's Kafka timestamp)")
    parser.add_argument("--lead", help="only this lead id")
    parser.add_argument("--type", help="only these types, a glob (web.*, send.email, "
                        "stage.mql, deadletter.nurture-scoring)")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep waiting for new records (Ctrl-C stops)")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many (0: no limit)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace, kafka: KafkaSettings, since: datetime | None) -> int:
    try:
        shown = asyncio.run(tail(kafka, args, since))
    except KeyboardInterrupt:
        return 130
    if not args.json:
        print(f"{shown} records", file=sys.stderr)
    return 0


@ends_quietly
def main(argv: Sequence[str] | None = None, prog: str = "nurture-ops tail") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        kafka = load(KafkaSettings)
        since = parse_since(args.since, datetime.now(UTC))
    except (ConfigError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return run(args, kafka, since)
