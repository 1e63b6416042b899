"""Durations in config files: a positive whole number and a unit, e.g. `30d` or `12h`."""

from __future__ import annotations

import re

SECONDS_PER_DAY = 86400
UNITS = {"m": 60, "h": 3600, "d": SECONDS_PER_DAY, "w": 7 * SECONDS_PER_DAY}
"""Seconds per unit: m (minutes), h (hours), d (days), w (weeks)."""

DURATION_PATTERN = "^[1-9][0-9]*(m|h|d|w)$"
"""The JSON Schema `pattern` of a duration, as config schemas spell it."""
DURATION_PROBLEM = "must be a duration: a positive whole number and a unit m, h, d or w (e.g. 30d)"
"""The short problem message for a value that is not a duration."""

_DURATION = re.compile(r"([1-9][0-9]*)([mhdw])")
_MAX_SHOWN = 40


def parse_duration(text: str) -> int:
    """The number of seconds in `text` (`30d` -> 2592000).

    Raises ValueError, naming the expected form, for anything else (`0d`, `1.5h`, `30 d`, `30D`).
    """
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        shown = repr(text)
        shown = shown if len(shown) <= _MAX_SHOWN else shown[:_MAX_SHOWN] + "…"
        raise ValueError(
            f"invalid duration {shown}: expected a positive whole number and a unit "
            "m (minutes), h (hours), d (days) or w (weeks), e.g. 30d"
        )
    return int(match[1]) * UNITS[match[2]]
