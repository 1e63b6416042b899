"""The measures of an endurance run (pure): latency percentiles per window, when consumer lag
was back after a fault, and whether a series kept growing from the middle third of the run to
the last. No I/O here: the run feeds it samples, the tests feed it made-up ones."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deploy.chaos.tally import Delivery, resolve

MB = 1024 * 1024
Point = tuple[float, float]  # (seconds into the run, value)
Lags = Mapping[str, int]  # consumer group -> records behind (end offsets - committed offsets)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `values`; None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """How many, and p50 / p95 / p99 / max (None when there are no values)."""
    return {"count": len(values), "p50": percentile(values, 50),
            "p95": percentile(values, 95), "p99": percentile(values, 99),
            "max": max(values) if values else None}


def window(points: Iterable[Point], start: float, end: float) -> dict[str, Any]:
    """The summary of the values whose time lies in (start, end]."""
    return summary([v for t, v in points if start < t <= end])


def latencies(received: Iterable[tuple[Delivery, float]],
              planned: Mapping[str, tuple[str, str]], accepted: Mapping[str, float],
              offsets: Mapping[str, float]) -> list[Point]:
    """(receipt time, seconds from due to receipt) of each message a peer took, first receipt
    of a message id only. A message is due when its lead's events were accepted plus the waits
    of the program before its step (`offsets`: step -> seconds); one whose lead or step cannot
    be told (its command not seen yet) is left out."""
    seen: set[tuple[str, str]] = set()
    points: list[Point] = []
    for delivery, at in received:
        if (delivery.kind, delivery.message_id) in seen:
            continue
        seen.add((delivery.kind, delivery.message_id))
        lead_step = resolve(delivery, planned)
        if lead_step is None or lead_step[0] not in accepted or lead_step[1] not in offsets:
            continue
        points.append((at, at - accepted[lead_step[0]] - offsets[lead_step[1]]))
    return points


def caught_up(lags: Lags | None, tolerance: int) -> bool:
    """Every group at most `tolerance` records behind (None: the broker could not be read)."""
    return lags is not None and all(n <= tolerance for n in lags.values())


def lag_recovery(points: Sequence[tuple[float, Lags | None]], since: float, *, tolerance: int,
                 bound: float) -> float | None:
    """Seconds from `since` to the first reading at which every group had caught up, if that
    came within `bound` seconds; None if it did not."""
    for t, lags in sorted(points, key=lambda p: p[0]):
        if t < since:
            continue
        if t - since > bound:
            return None
        if caught_up(lags, tolerance):
            return t - since
    return None


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a series may rise from the middle third of the run to the last: the last
    third's figure may be at most `factor` times the middle third's plus `slack`."""

    factor: float
    slack: float

    def limit(self, middle: float) -> float:
        return self.factor * middle + self.slack


# rows of a pruned table: the last third's highest count against the middle third's highest
ROWS = Tolerance(1.25, 50)
# memory of a service process: the last third's median RSS against the middle third's median
RSS = Tolerance(1.25, 20 * MB)
# latency: the last third's median of the windows' p50 (ms) against the middle third's; a
# pipeline that cannot keep up shows a latency growing with the run (its backlog sits in the
# services' tables, where Kafka lag does not see it)
LATENCY = Tolerance(1.25, 1000)


@dataclass(frozen=True, slots=True)
class Growth:
    """The middle and last thirds' figures of one series, the limit the last must stay
    under, and whether it did (None: a third had no samples)."""

    middle: float | None
    last: float | None
    limit: float | None
    bounded: bool | None
    steady_only: bool = True  # False: a third had no sample outside faults, all were used

    def as_dict(self) -> dict[str, Any]:
        return {"middle": self.middle, "last": self.last, "limit": self.limit,
                "bounded": self.bounded, "steady_only": self.steady_only}


def growth(points: Sequence[Point], *, start: float, end: float,
           disturbed: Sequence[tuple[float, float]], tolerance: Tolerance,
           stat: str) -> Growth:
    """Did the series level off? Its samples in [start, end] are split into thirds by time;
    those inside a `disturbed` interval (a fault, until lag was back) are left out, as a
    backlog is not growth, unless that empties a third. `stat` is `max` (rows: the last third's
    highest count against the middle third's highest) or `median` (memory: median against
    median)."""
    one, two = start + (end - start) / 3, start + 2 * (end - start) / 3

    def quiet(t: float) -> bool:
        return not any(a <= t <= b for a, b in disturbed)

    def thirds(only_quiet: bool) -> tuple[list[float], list[float]]:
        kept = [(t, v) for t, v in points if start <= t <= end and (quiet(t) or not only_quiet)]
        return [v for t, v in kept if one <= t < two], [v for t, v in kept if t >= two]

    middle, last = thirds(True)
    steady = bool(middle and last)
    if not steady:
        middle, last = thirds(False)
    if not middle or not last:
        return Growth(None, None, None, None, steady)
    def figure(values: list[float]) -> float:
        return float(max(values) if stat == "max" else statistics.median(values))
    m, lt = figure(middle), figure(last)
    limit = tolerance.limit(m)
    return Growth(m, lt, limit, lt <= limit, steady)


def went_down(points: Sequence[Point]) -> bool:
    """Whether the series ever fell from one sample to the next (pruning at work)."""
    values = [v for _, v in sorted(points, key=lambda p: p[0])]
    return any(b < a for a, b in itertools.pairwise(values))
