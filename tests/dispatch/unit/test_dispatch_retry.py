"""The retry policy: exponential, jittered, capped, honoring Retry-After, and None after the
last attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.domain.retry import RetryPolicy

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, base_delay=30, max_delay=600)


@pytest.mark.parametrize(("attempt", "jitter", "seconds"), [
    (1, 0.0, 15), (1, 1.0, 30), (2, 0.0, 30), (2, 1.0, 60), (3, 0.5, 90),
    (4, 1.0, 240), (5, 1.0, 480), (9, 1.0, 600), (9, 0.0, 300),
])
def test_backoff_doubles_with_jitter_up_to_the_cap(attempt: int, jitter: float,
                                                   seconds: float) -> None:
    assert POLICY.delay(attempt, jitter=jitter) == seconds


@pytest.mark.parametrize(("retry_after", "seconds"), [(5, 15), (120, 120), (10_000, 600)])
def test_retry_after_is_a_floor_capped_at_the_maximum(retry_after: float,
                                                      seconds: float) -> None:
    assert POLICY.delay(1, jitter=0.0, retry_after=retry_after) == seconds


def test_next_attempt_is_a_time_and_none_after_the_last() -> None:
    assert POLICY.next_attempt(1, now=NOW, jitter=1.0) == NOW + timedelta(seconds=30)
    assert POLICY.next_attempt(4, now=NOW, jitter=0.0) is not None
    assert POLICY.next_attempt(5, now=NOW, jitter=0.0) is None
    assert RetryPolicy(max_attempts=1).next_attempt(1, now=NOW, jitter=0.5) is None


@given(st.integers(1, 50), st.floats(0, 1), st.none() | st.floats(0, 1e6))
def test_delays_stay_within_half_window_and_cap(attempt: int, jitter: float,
                                                retry_after: float | None) -> None:
    wait = POLICY.delay(attempt, jitter=jitter, retry_after=retry_after)
    window = min(600, 30 * 2 ** (attempt - 1))
    assert window / 2 <= wait <= 600
    if retry_after is not None:
        assert wait >= min(retry_after, 600)


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1},
                                    {"base_delay": 10, "max_delay": 5}, {"multiplier": 0.5}])
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_jitter_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        POLICY.delay(1, jitter=1.5)
