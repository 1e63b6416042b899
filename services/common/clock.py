"""Time as a dependency. Decision code never reads the wall clock; it is handed `now`.

`SystemClock` is production; `ControllableClock` lets tests and demos move time forward (a 90-day
program in seconds) through the real services. `SharedClock` is how ingest and dispatch follow
the orchestrator's controllable clock (the wall clock plus the offset it stores) in local runs:
one clock for everything that stamps or judges time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx

from services.common.config.settings import ClockSettings

log = logging.getLogger(__name__)


class Clock(Protocol):
    """Source of the current time (always timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ControllableClock:
    """A clock that only moves when told to: `set()` or `advance()`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        if self._now.tzinfo is None:
            raise ValueError("ControllableClock needs a timezone-aware start time")

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("time must be timezone-aware")
        self._now = when

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += delta
        return self._now


class SharedClock:
    """The wall clock plus the offset of the orchestrator's clock, read from its
    `GET /v1/admin/clock` every `refresh_seconds` while `following()`. Until the first answer,
    and while the orchestrator does not answer, the last offset known (0 at first) holds."""

    def __init__(self, settings: ClockSettings) -> None:
        assert settings.url is not None
        self.url, self.every = settings.url, settings.refresh_seconds
        token = settings.token.get_secret_value() if settings.token is not None else None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.offset = 0.0
        self.failing = False

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    async def refresh(self, client: httpx.AsyncClient) -> None:
        """Read the offset once; a failure is logged (once until it answers again)."""
        try:
            response = await client.get(self.url, headers=self.headers)
            response.raise_for_status()
            self.offset = float(response.json()["offset_seconds"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            if not self.failing:
                log.warning("cannot read the shared clock; keeping offset %.0f s: %s",
                            self.offset, exc, extra={"clock_url": self.url})
            self.failing = True
            return
        if self.failing:
            log.info("the shared clock answers again", extra={"offset_seconds": self.offset})
        self.failing = False

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[None]:
        """Read the offset now, then every `refresh_seconds` until the block ends."""
        async with httpx.AsyncClient(timeout=5) as client:
            await self.refresh(client)

            async def follow() -> None:
                while True:
                    await asyncio.sleep(self.every)
                    await self.refresh(client)
            task = asyncio.create_task(follow())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def clock_of(settings: ClockSettings) -> SystemClock | SharedClock:
    """The clock these settings say to follow: the shared one if a URL is set, else the wall."""
    return SharedClock(settings) if settings.url else SystemClock()


@contextlib.asynccontextmanager
async def following(clock: object) -> AsyncIterator[None]:
    """While the block runs, keep `clock` in step if it is a `SharedClock` (else nothing)."""
    if isinstance(clock, SharedClock):
        async with clock.following():
            yield
    else:
        yield
