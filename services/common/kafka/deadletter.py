"""Dead letters: a record no consumer could process goes to `nurture.deadletter.v1` with its
original bytes, the reason and its origin, so nothing is silently dropped and it can be replayed
after a fix. Every consumer builds its dead letters here, so they all look the same."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

REPLAYED_HEADER = "nurture-replayed-from"  # on a record `nurture-dlq replay` put back


def replayed(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Whether a record was put back from the dead-letter topic (`nurture-dlq replay`)."""
    return any(name == REPLAYED_HEADER for name, _ in headers or ())


@dataclass(frozen=True, slots=True)
class Origin:
    topic: str
    partition: int
    offset: int


def dead_letter(
    *, key: bytes | None, value: bytes | None, origin: Origin, error: str, consumer: str,
    failed_at: datetime,
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead-letter record for one failed input record. The key is
    kept, so the dead letter lands with the lead's other records."""
    body = {
        "error": error,
        "consumer": consumer,
        "failed_at": failed_at.isoformat(),
        "origin": {"topic": origin.topic, "partition": origin.partition, "offset": origin.offset},
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value).decode() if value is not None else None,
    }
    headers = [("content-type", b"application/json"), ("nurture-error", error[:200].encode()),
               ("nurture-consumer", consumer.encode())]
    return key, orjson.dumps(body), headers
