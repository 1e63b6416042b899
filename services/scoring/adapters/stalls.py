"""Partitions with records to read that the worker has stopped reading (faust_app, workaround 13).

A worker sometimes stopped receiving the records of some or all of its partitions after a
rebalance: its agent waited for events the broker held, or its table's recovery for changelog
records aiokafka had fetched, with no error (docs/architecture.md, known problem). The first
report found the cause of the stream form (records fetched while faust's recovery resumed the
streams, then cleared from the stream's queue by `flow_control.resume()`; workaround 14 keeps
them). This module makes a stall visible and explains it: `Stalls` decides which partitions are
stalled, `consumer_state` describes what faust's consumer and aiokafka's fetcher beneath it
hold (private attributes, read for this report only), `watched_tasks` where faust's fetch loop
and changelog reader wait."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STALL_SECONDS = 30.0
WATCHED_TASKS = ("_drain_messages", "_slurp_changelogs")  # faust's fetch loop, its recovery


@dataclass
class Stalls:
    """Which partitions have had records to read (lag) and the same read offset for `after`
    seconds: each is reported once, when it turns stalled, and again only after it moved."""

    after: float = STALL_SECONDS
    since: dict[Any, tuple[int | None, float]] = field(default_factory=dict)  # read, since when
    reported: set[Any] = field(default_factory=set)

    def observe(self, now: float, lag: Mapping[Any, int],
                read: Mapping[Any, int | None]) -> list[Any]:
        """The partitions that turned stalled at `now`, given each one's `lag` and `read`
        offset (None: nothing read yet); partitions not in `lag` are forgotten."""
        for tp in set(self.since) - set(lag):
            del self.since[tp]
            self.reported.discard(tp)
        stalled = []
        for tp, behind in lag.items():
            offset = read.get(tp)
            seen = self.since.get(tp)
            if seen is None or seen[0] != offset or behind <= 0:
                self.since[tp] = (offset, now)
                self.reported.discard(tp)
                continue
            if now - seen[1] >= self.after and tp not in self.reported:
                self.reported.add(tp)
                stalled.append(tp)
        return stalled


def partition_name(tp: Any) -> str:
    """A partition as the report names it: `topic[partition]`."""
    return f"{tp.topic}[{tp.partition}]"


def _names(tps: Iterable[Any] | None) -> list[str]:
    return sorted(partition_name(tp) for tp in tps or ())


def consumer_state(app: Any) -> dict[str, Any]:
    """What the faust `app`'s consumer holds: its flow, the partitions faust fetches (active)
    and holds back (paused), its read offsets, and per assigned partition aiokafka's fetch
    position, pause and whether fetched records wait to be taken. Best effort: a part that
    cannot be read is left out."""
    consumer = app.consumer
    state: dict[str, Any] = {
        "generation": getattr(app, "consumer_generation_id", None),
        "in_recovery": getattr(app, "in_recovery", None),
        "flow_active": getattr(consumer, "flow_active", None),
        "active": _names(getattr(consumer, "_active_partitions", None)),
        "paused": _names(getattr(consumer, "_paused_partitions", None)),
        "buffered": _names(getattr(consumer, "_buffered_partitions", None)),
        "read_offsets": {partition_name(tp): offset for tp, offset
                         in dict(getattr(consumer, "_read_offset", {})).items()},
        "unacked": len(getattr(consumer, "_unacked_messages", ())),
    }
    fetcher = getattr(getattr(getattr(consumer, "_thread", None), "_consumer", None),
                      "_fetcher", None)
    subscription = getattr(getattr(fetcher, "_subscriptions", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    if fetcher is not None and assignment is not None:
        try:  # the consumer's thread owns these: a copy can meet a change and is tried once
            waiting = set(dict(fetcher._records))
            state["fetch"] = {
                partition_name(tp): {"position": tp_state._position, "paused": tp_state.paused,
                            "fetched_waiting": tp in waiting}
                for tp, tp_state in dict(assignment._tp_state).items()}
        except RuntimeError as exc:  # "dictionary changed size during iteration"
            state["fetch"] = repr(exc)
    return state


def await_chain(coro: Any) -> list[str]:
    """Where a coroutine waits: each coroutine (or generator) it awaits, as `name:line`, and
    last what the innermost one waits for (a future, an event)."""
    chain = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            chain.append(type(coro).__name__)
            break
        chain.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


def watched_tasks(names: Iterable[str] = WATCHED_TASKS) -> dict[str, list[str]]:
    """The await chains of this loop's tasks that run any of `names` (faust's fetch loop and
    its recovery's changelog reader): where each waits when records stop arriving."""
    found: dict[str, list[str]] = {}
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop
        return found
    for task in tasks:
        chain = await_chain(task.get_coro())
        if any(name in step for step in chain for name in names):
            found[task.get_name()] = chain
    return found
