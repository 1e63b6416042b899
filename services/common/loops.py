"""The background loop every consumer-side service runs (timers, outbox relays, retries)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def loop(work: Callable[[], Awaitable[int]], stop: asyncio.Event, idle: float,
               wake: asyncio.Event | None = None, what: str = "") -> None:
    """Run `work` until `stop`; wait `idle` seconds (or until `wake`) when it found nothing.
    A failing round is logged and retried: a database or broker outage is waited out."""
    while not stop.is_set():
        if wake is not None:
            wake.clear()  # before the work: a wake-up during it makes the next wait return
        try:
            done = await work()
        except Exception:  # one failed round must not stop the loop; it is logged
            log.exception("round failed, retrying", extra={"loop": what})
            done = 0
            await asyncio.sleep(min(idle * 10, 5))
        if done:
            continue
        waiters = [asyncio.ensure_future(stop.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        _, pending = await asyncio.wait(waiters, timeout=idle,
                                        return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
