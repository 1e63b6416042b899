"""faust's delivery of one message without four tasks when nothing has to wait (faust_app,
workaround 12).

faust's consumer hands each fetched message to the streams through
`wait_first(callback(message), suspend_flow.wait())`, and `mode`'s `wait_first` makes a task of
each of those and of the service's stopped and crashed events, waits for the first, and cancels
the other three: about 30 µs per message, a sixth of the scoring worker's CPU per event. The
callback (the conductor's `on_message`) almost never waits: it only does when the flow is paused
for a rebalance, the producer's buffer or a stream's queue is full.

`Eager` runs the callback's first step at once, as Python 3.12's eager tasks do: when
it finishes without waiting, that is the result; when it waits, the rest of it is handed to the
original `wait_first` as it stands (`Resumed`), with the same semantics as before (a pause of the
flow or a stop cancels it). When the flow is already paused or the service stopping, the
original runs from the start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from mode.services import WaitResults

WaitFirst = Callable[..., Awaitable[WaitResults]]


class Resumed:
    """The rest of a coroutine whose first step already ran and yielded `pending` (the future
    it waits for, or None for a bare yield): awaiting this drives it on where it stopped, passing
    in what the awaiting task sends and throws, as `await coro` would have."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, step = self.coro, self.pending
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the awaiting task: passed on
                try:
                    step = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def _close(waitable: Any) -> None:
    if isinstance(waitable, Coroutine):
        waitable.close()


async def _rest(resumed: Resumed) -> Any:
    return await resumed


class Eager:
    """`original` (a service's `wait_first`), except for a coroutine and one event's wait while
    `ready()` (the flow runs, the service neither stopped nor crashed): the coroutine starts at
    once, and finishes without a task if it never waits."""

    def __init__(self, original: WaitFirst, ready: Callable[[], bool]) -> None:
        self.original, self.ready = original, ready

    async def __call__(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 - mode's signature
        if timeout is not None or len(coros) != 2 or not isinstance(coros[0], Coroutine) \
                or not self.ready():
            return await self.original(*coros, timeout=timeout)
        first, event_wait = coros
        try:
            pending = first.send(None)
        except StopIteration as stop:
            _close(event_wait)  # never awaited: it only mattered while the callback waited
            return WaitResults([first], [stop.value], False)
        except BaseException:
            _close(event_wait)
            raise
        return await self.original(_rest(Resumed(first, pending)), event_wait)
