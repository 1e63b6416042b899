"""`nurture.deadletter.v1`: a record no consumer could process, with its original bytes, the
reason and where it came from, so nothing is silently dropped and it can be replayed after a fix
(`nurture-dlq`)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Self

from schemas.records.base import Record, Timestamp


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the failed record was: topic, partition and offset."""

    topic: str
    partition: int
    offset: int


class DeadLetter(Record):
    """The failed record's key and value (base64, exactly as consumed), why it failed, which
    consumer gave up on it and when. Keyed like the original, so it lands with the lead's other
    records."""

    TOPIC: ClassVar[str] = "nurture.deadletter.v1"

    error: str
    consumer: str
    failed_at: Timestamp
    origin: Origin
    key_b64: str | None = None
    value_b64: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """The failed record's headers, each (name, value base64): a binary-mode CloudEvent keeps
    its attributes there. Empty in dead letters written before they were kept."""

    @classmethod
    def of(cls, *, key: bytes | None, value: bytes | None, origin: Origin, error: str,
           consumer: str, failed_at: datetime,
           headers: Sequence[tuple[str, bytes | None]] = ()) -> Self:
        """The dead letter of one failed input record (a null header value is kept empty)."""
        return cls(error=error, consumer=consumer, failed_at=failed_at, origin=origin,
                   key_b64=_b64(key), value_b64=_b64(value),
                   headers=tuple((name, base64.b64encode(raw or b"").decode())
                                 for name, raw in headers))

    @property
    def key(self) -> bytes | None:
        """The original record key."""
        return base64.b64decode(self.key_b64) if self.key_b64 is not None else None

    @property
    def value(self) -> bytes | None:
        """The original record value, byte for byte."""
        return base64.b64decode(self.value_b64) if self.value_b64 is not None else None

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The original record headers, byte for byte."""
        return [(name, base64.b64decode(raw)) for name, raw in self.headers]


def _b64(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode() if raw is not None else None
