"""`nurture-dlq`: look at dead letters and, after a fix, put them back where they came from.

    nurture-dlq list   [--since 2h | 2026-11-24T08:00Z] [--reason TEXT] [--consumer NAME] [--json]
    nurture-dlq replay [same filters] [--dry-run]

`replay` re-publishes each dead letter's original key and bytes to its origin topic, marked with
a `nurture-replayed-from` header. The consumers dedupe on event id / message id, so replaying
twice is harmless (while they keep their marks, `NURTURE_<SVC>_RETENTION_DAYS`); what failed for
good is tried again: the orchestrator decides again an event whose decision failed, and
dispatch attempts again a message that failed for good (never one whose hand-off may have
reached the provider). Letters of records that came over HTTP (origin
`http:...`, e.g. a Segment call refused at ingest) have no topic to go back to: `replay` leaves
them and says so; send them to ingest again. It reads the dead-letter topic up to its end at the
start of the command, so it always terminates."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.records import DeadLetter, RecordError
from services.common.cli import ends_quietly
from services.common.config.settings import KafkaSettings, load
from services.common.errors import ConfigError
from services.common.kafka.clients import make_producer
from services.common.kafka.deadletter import REPLAYED_HEADER
from services.common.kafka.topics import Topics
from services.operator.options import SINCE_HELP, parse_since
from services.operator.reader import read_topic

TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # what Kafka accepts as a topic name


@dataclass(frozen=True, slots=True)
class Letter:
    offset: int
    partition: int
    error: str
    consumer: str
    failed_at: datetime
    origin_topic: str
    origin: str  # topic/partition/offset
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()  # the failed record's own


def decode(partition: int, offset: int, value: bytes) -> Letter | None:
    try:
        letter = DeadLetter.from_bytes(value)
    except RecordError:
        return None  # not a dead letter of ours: shown as unreadable, never replayed
    origin = letter.origin
    return Letter(
        offset=offset, partition=partition, error=letter.error, consumer=letter.consumer,
        failed_at=letter.failed_at, origin_topic=origin.topic,
        origin=f"{origin.topic}/{origin.partition}/{origin.offset}",
        key=letter.key, value=letter.value, headers=tuple(letter.original_headers))


def matches(letter: Letter, args: argparse.Namespace, since: datetime | None) -> bool:
    return ((since is None or letter.failed_at >= since)
            and (not args.reason or args.reason.lower() in letter.error.lower())
            and (not args.consumer or args.consumer == letter.consumer))


async def read_all(kafka: KafkaSettings, topic: str) -> tuple[list[Letter], int]:
    """Every dead letter up to the topic's current end; and how many records were unreadable."""
    letters, unreadable = [], 0
    async for record in read_topic(kafka, topic, client_id="nurture-dlq"):
        letter = decode(record.partition, record.offset, record.value or b"")
        if letter is None:
            unreadable += 1
        else:
            letters.append(letter)
    return letters, unreadable


async def replay(kafka: KafkaSettings, letters: Sequence[Letter]) -> int:
    producer = make_producer(kafka, client_id="nurture-dlq")
    await producer.start()
    try:
        futures = [await producer.send(
            letter.origin_topic, letter.value, key=letter.key, headers=[
                *letter.headers, (REPLAYED_HEADER, f"{letter.partition}/{letter.offset}".encode())])
            for letter in letters if letter.value is not None or letter.headers]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def render(letters: Sequence[Letter]) -> str:
    lines = [f"{'failed at':<26}{'consumer':<22}{'origin':<40}reason"]
    lines += [f"{letter.failed_at.isoformat(timespec='seconds'):<26}{letter.consumer:<22}"
              f"{letter.origin:<40}{letter.error[:100]}" for letter in letters]
    return "\n".join(lines)


async def run(args: argparse.Namespace, kafka: KafkaSettings) -> int:
    since = parse_since(args.since, datetime.now(UTC))
    letters, unreadable = await read_all(kafka, Topics(kafka.topic_prefix).deadletter)
    chosen = [letter for letter in letters if matches(letter, args, since)]
    if args.command == "list":
        if args.json:
            print(orjson.dumps([_as_dict(letter) for letter in chosen]).decode())
        else:
            print(render(chosen))
            print(f"{len(chosen)} of {len(letters)} dead letters"
                  + (f"; {unreadable} unreadable records" if unreadable else ""))
        return 0
    to_topics = [letter for letter in chosen if TOPIC_NAME.fullmatch(letter.origin_topic)]
    if len(to_topics) < len(chosen):
        print(f"left {len(chosen) - len(to_topics)} dead letters whose origin is not a topic "
              "(records refused over HTTP: send them to ingest again)")
    if args.dry_run:
        print(f"would replay {len(to_topics)} dead letters")
        return 0
    print(f"replayed {await replay(kafka, to_topics)} dead letters to their origin topics")
    return 0


def _as_dict(letter: Letter) -> dict[str, Any]:
    return {"failed_at": letter.failed_at.isoformat(), "consumer": letter.consumer,
            "origin": letter.origin, "error": letter.error,
            "dead_letter": f"{letter.partition}/{letter.offset}"}


@ends_quietly
def main(argv: Sequence[str] | None = None, prog: str = "nurture-dlq") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "replay"):
        cmd = sub.add_parser(name, help=f"{name} dead letters")
        cmd.add_argument("--since", help=SINCE_HELP)
        cmd.add_argument("--reason", help="only those whose error contains this text")
        cmd.add_argument("--consumer", help="only those of this consumer (nurture-scoring, ...)")
    sub.choices["list"].add_argument("--json", action="store_true")
    sub.choices["replay"].add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        kafka = load(KafkaSettings)
        parse_since(args.since, datetime.now(UTC))
    except (ConfigError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(args, kafka))


if __name__ == "__main__":
    sys.exit(main())
