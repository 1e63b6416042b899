"""Event time, parsed and formatted one way everywhere. `time` is RFC 3339 with an offset; an
event dated before 2000 or after 2100 is not usable (and would break date arithmetic), so it is
refused here rather than deep inside a consumer."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.formats import parse_rfc3339

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def event_epoch(value: object) -> float:
    """Epoch seconds of an RFC 3339 `time`; ValueError (saying why) for anything else."""
    if not isinstance(value, str):
        raise ValueError("'time' is not a string")
    try:
        epoch = parse_rfc3339(value).timestamp()
    except ValueError:
        raise ValueError("'time' is not an RFC 3339 date-time with a timezone") from None
    if not EARLIEST <= epoch < LATEST:
        raise ValueError("'time' is outside 2000-2099")
    return epoch


def rfc3339(epoch: float) -> str:
    """`2026-11-24T09:30:00.000Z` (UTC, milliseconds)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
