"""faust's message delivery made eager (`Eager`, faust_app workaround 12), against `mode`'s own
`wait_first` on a real service: a callback that never waits finishes at once, without tasks;
one that waits finishes as before, and is cancelled as before when the flow is paused."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from mode import Service
from mode.utils.locks import Event

from services.scoring.adapters.eager import Eager


class Consumer(Service):
    """A service with the consumer's flow event (faust's `suspend_flow`)."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = Event()

    def eager(self) -> Eager:
        return Eager(self.wait_first, lambda: not (
            self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()))


async def test_a_callback_that_never_waits_runs_before_anything_else_is_scheduled() -> None:
    consumer = Consumer()
    ran_first: list[bool] = []
    order: list[str] = []

    async def callback() -> str:
        ran_first.append(not order)
        return "delivered"

    for wait_first in (consumer.eager(), consumer.wait_first):
        order.clear()
        asyncio.get_running_loop().call_soon(order.append, "other")
        result = await wait_first(callback(), consumer.suspend_flow.wait())
        assert result.results == ["delivered"] and not result.stopped
    # eager: before the other callback; mode's: only after it (its task runs later)
    assert ran_first == [True, False]


async def test_a_callback_that_waits_finishes_with_its_result() -> None:
    consumer = Consumer()
    room = asyncio.Event()
    steps: list[str] = []

    async def callback() -> str:
        steps.append("started")
        await room.wait()
        await asyncio.sleep(0)
        steps.append("resumed")
        return "delivered"

    asyncio.get_running_loop().call_later(0.01, room.set)
    result = await consumer.eager()(callback(), consumer.suspend_flow.wait())
    assert steps == ["started", "resumed"]
    assert "delivered" in result.results


@pytest.mark.parametrize("waits_on", ["a future", "bare yields"])
async def test_a_waiting_callback_is_cancelled_when_the_flow_is_paused(waits_on: str) -> None:
    consumer = Consumer()
    cancelled = asyncio.Event()

    async def callback() -> None:
        try:  # never done: the flow must win
            if waits_on == "a future":
                await asyncio.Event().wait()
            for _ in itertools.count():  # bare yields: the task throws the cancel in itself
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
    await asyncio.wait_for(consumer.eager()(callback(), consumer.suspend_flow.wait()), 10)
    await asyncio.wait_for(cancelled.wait(), 10)


async def test_a_callbacks_error_reaches_the_caller_whether_or_not_it_waited() -> None:
    consumer = Consumer()

    async def at_once() -> None:
        raise ValueError("at once")

    async def later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    for callback, message in ((at_once, "at once"), (later, "later")):
        with pytest.raises(ValueError, match=message):
            await consumer.eager()(callback(), consumer.suspend_flow.wait())


async def test_with_the_flow_paused_the_callback_does_not_run_first() -> None:
    consumer = Consumer()
    consumer.suspend_flow.set()
    order: list[str] = []

    async def callback() -> None:
        order.append("callback")

    asyncio.get_running_loop().call_soon(order.append, "other")
    await consumer.eager()(callback(), consumer.suspend_flow.wait())
    assert order[0] == "other"  # mode's wait_first: nothing ran eagerly
