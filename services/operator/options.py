"""Options the operator commands share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.common.config.durations import parse_duration

SINCE_HELP = "only newer than this: 30m, 2h, 3d, 1w ago, or an RFC 3339 time"


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """`2h` / `3d` ago, or an RFC 3339 time; None for no bound. ValueError otherwise."""
    if not text:
        return None
    if text[-1:] in ("m", "h", "d", "w") and text[:-1].isdigit():
        return now - timedelta(seconds=parse_duration(text))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: expected 30m, 2h, 3d, 1w or an RFC 3339 time "
                         "(2026-11-24T08:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
