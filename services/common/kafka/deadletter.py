"""Dead letters: a record no consumer could process goes to `nurture.deadletter.v1` as a
`schemas.records.DeadLetter` (original bytes, reason, origin), so nothing is silently dropped and
it can be replayed after a fix. Every consumer builds its dead letters here, so they all look the
same."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from schemas.records import DeadLetter, Origin

__all__ = ["REPLAYED_HEADER", "Origin", "dead_letter", "replayed"]

REPLAYED_HEADER = "nurture-replayed-from"  # on a record `nurture-dlq replay` put back


def replayed(headers: Sequence[tuple[str, bytes]] | None) -> bool:
    """Whether a record was put back from the dead-letter topic (`nurture-dlq replay`)."""
    return any(name == REPLAYED_HEADER for name, _ in headers or ())


def dead_letter(
    *, key: bytes | None, value: bytes | None, origin: Origin, error: str, consumer: str,
    failed_at: datetime, headers: Sequence[tuple[str, bytes | None]] | None = None,
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead-letter record for one failed input record (`headers`:
    the failed record's, kept in the letter). The key is kept, so the dead letter lands with the
    lead's other records."""
    letter = DeadLetter.of(key=key, value=value, origin=origin, error=error, consumer=consumer,
                           failed_at=failed_at, headers=[
                               (name, raw) for name, raw in headers or ()
                               if name != REPLAYED_HEADER])
    return key, letter.to_bytes(), [
        ("content-type", b"application/json"), ("nurture-error", error[:200].encode()),
        ("nurture-consumer", consumer.encode())]
