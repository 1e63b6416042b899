"""End-to-end latency on a quiet stack is milliseconds: the histogram resolves 5, 10, 25 and
50 ms, so a p50 or p99 under 100 ms is not reported as "somewhere below 0.1 s"."""

from __future__ import annotations

from services.common.observability.metrics import new_registry
from services.dispatch.metrics import DispatchMetrics


def test_a_seven_millisecond_message_lands_below_ten_milliseconds() -> None:
    registry = new_registry()
    DispatchMetrics(registry).end_to_end.labels("email").observe(0.007)

    def bucket(le: str) -> float | None:
        return registry.get_sample_value("nurture_end_to_end_latency_seconds_bucket",
                                         {"channel": "email", "le": le})
    assert bucket("0.005") == 0
    assert bucket("0.01") == 1
    assert bucket("0.025") == bucket("0.05") == bucket("0.1") == 1
