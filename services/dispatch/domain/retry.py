"""When to try a failed delivery again (pure): exponential backoff with "equal jitter" (half the
window fixed, half random), capped, never sooner than the provider's `Retry-After`, and nothing
after the last attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every attempt, the first included. The n-th retry waits between
    half and all (by `jitter`) of `min(max_delay, base_delay * multiplier**(n-1))`."""

    max_attempts: int = 5
    base_delay: float = 30.0
    max_delay: float = 3600.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay \
                or self.multiplier < 1:
            raise ValueError(f"invalid retry policy: {self}")

    def delay(self, attempt: int, *, jitter: float, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based). `jitter` in [0, 1]
        comes from the caller (random in production, fixed in tests); the backoff window is
        never below half its size, so retries do not bunch up at zero."""
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be in [0, 1]")
        window = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        wait = window * (0.5 + jitter / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait

    def next_attempt(self, attempt: int, *, now: datetime, jitter: float,
                     retry_after: float | None = None) -> datetime | None:
        """When to make attempt `attempt + 1`, or None when `attempt` was the last one."""
        if attempt >= self.max_attempts:
            return None
        return now + timedelta(seconds=self.delay(attempt, jitter=jitter,
                                                  retry_after=retry_after))
