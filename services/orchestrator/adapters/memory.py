"""In-memory repositories and unit of work that behave like the PostgreSQL ones
(`adapters/unit_of_work.py`): the same processed marks, timers, erasure and outbox rows (one
writer at a time, so no locks), committed or rolled back as a whole. For unit tests of the
service layer; the contract suite (`tests/orchestrator/contract/`) keeps the two in step."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from services.common.db.outbox import Outgoing
from services.common.kafka.topics import Topics
from services.orchestrator.adapters.records import outbox_rows
from services.orchestrator.domain.effects import Effects, Timer
from services.orchestrator.domain.lead import Lead
from services.orchestrator.service_layer.unit_of_work import DueTimer


@dataclass
class MemoryStore:
    """What the tables hold (committed state)."""

    leads: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> lead document
    processed: dict[str, bool] = field(default_factory=dict)  # event key -> decision failed
    timers: dict[int, tuple[str, Timer]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    enrollments: dict[tuple[str, str, float], dict[str, Any]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # absorbed id -> the lead it went into
    outbox: list[Outgoing] = field(default_factory=list)
    clock_offset: float = 0.0
    next_id: int = 1
    commits: int = 0


class MemoryLeads:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def lock(self, lead_ids: Iterable[str]) -> dict[str, Lead]:
        docs = self._uow.data.leads
        return {i: Lead.from_dict(copy.deepcopy(docs[i])) for i in sorted(set(lead_ids))
                if i in docs}

    async def get(self, lead_id: str) -> Lead | None:
        return (await self.lock([lead_id])).get(lead_id)

    async def with_phone(self, phone: str) -> list[str]:
        return sorted(i for i, doc in self._uow.data.leads.items()
                      if doc.get("profile", {}).get("phone") == phone)

    async def save(self, leads: Mapping[str, Lead],
                   effects: Sequence[tuple[str, Effects]]) -> None:
        data = self._uow.data
        for lead_id, lead in leads.items():
            data.leads[lead_id] = lead.to_dict()
            for e in lead.enrollments.values():
                data.enrollments[(lead_id, e.program_id, e.entered_at)] = {
                    "lead_id": lead_id, "program_id": e.program_id, "status": e.status,
                    "step_id": e.step_id, "exit_reason": e.exit_reason,
                    "exited_at": e.exited_at, "program_version": e.program_version}
        for lead_id, fx in effects:
            data.history += [{"lead_id": lead_id, "from_stage": c.from_stage,
                              "to_stage": c.to_stage, "at": c.at, "cause": c.cause}
                             for c in fx.stage_changes]
            for timer in fx.timers:
                if timer.kind == "score":  # one per lead and model: the new one replaces it
                    data.timers = {i: (lid, tm) for i, (lid, tm) in data.timers.items()
                                   if (lid, tm.kind, tm.program_id)
                                   != (lead_id, "score", timer.program_id)}
                data.timers[data.next_id] = (lead_id, timer)
                data.next_id += 1
            data.messages += [{"lead_id": lead_id, "program_id": n.program_id,
                               "step_id": n.step_id, "channel": n.channel, "status": n.status,
                               "reason": n.reason, "at": n.at, "message_id": n.message_id}
                              for n in fx.notes]
            self._uow.publish(*outbox_rows(lead_id, fx, self._uow.topics))

    async def erase(self, lead_id: str, *, now: float) -> bool:
        data = self._uow.data
        existed = data.leads.pop(lead_id, None) is not None
        data.links = {k: v for k, v in data.links.items() if lead_id not in (k, v)}
        data.timers = {i: t for i, t in data.timers.items() if t[0] != lead_id}
        data.outbox = [o for o in data.outbox if not (
            o.key == lead_id.encode() and o.topic == self._uow.topics.dispatch)]
        self._uow.pending = [o for o in self._uow.pending if not (
            o.key == lead_id.encode() and o.topic == self._uow.topics.dispatch)]
        alias = f"erased-{data.next_id}"
        data.next_id += 1
        for row in (*data.history, *data.messages):
            if row["lead_id"] == lead_id:
                row["lead_id"] = alias
        for key, row in list(data.enrollments.items()):
            if row["lead_id"] == lead_id:
                del data.enrollments[key]
                if row["status"] == "active":
                    row |= {"status": "exited", "exit_reason": "erased", "exited_at": now}
                data.enrollments[(alias, *key[1:])] = row | {"lead_id": alias}
        return existed

    async def absorb(self, lead_id: str, *, into: str, moved: Collection[str],
                     stages: tuple[str, str], now: float) -> None:
        data = self._uow.data
        data.leads.pop(lead_id, None)
        def moves(tm: Timer) -> bool:
            return tm.kind != "score" and tm.program_id in moved

        data.timers = {i: (into if lid == lead_id else lid, tm)
                       for i, (lid, tm) in data.timers.items() if lid != lead_id or moves(tm)}
        for row in (*data.history, *data.messages):
            if row["lead_id"] == lead_id:
                row["lead_id"] = into
        for key, row in list(data.enrollments.items()):
            if row["lead_id"] != lead_id:
                continue
            del data.enrollments[key]
            if (into, *key[1:]) in data.enrollments:
                continue
            if row["status"] == "active" and row["program_id"] not in moved:
                row |= {"status": "exited", "exit_reason": "merged", "exited_at": now}
            data.enrollments[(into, *key[1:])] = row | {"lead_id": into}
        data.history.append({"lead_id": into, "from_stage": stages[0], "to_stage": stages[1],
                             "at": now, "cause": f"merged from {lead_id}"})

    async def link(self, lead_id: str, *, into: str, now: float) -> None:
        data = self._uow.data
        data.links = {k: into if v == lead_id else v for k, v in data.links.items()}
        data.links[lead_id] = into

    async def merged_into(self, lead_ids: Iterable[str]) -> dict[str, str]:
        links = self._uow.data.links
        return {i: links[i] for i in set(lead_ids) if i in links}

    async def sends(self, message_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        wanted = set(message_ids)
        return {m["message_id"]: (m["program_id"], m["step_id"]) for m in self._uow.data.messages
                if m["message_id"] in wanted and m["status"] == "sent"}


class MemoryProcessedEvents:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, keys: Sequence[str], *, now: float,
                    replayed: Iterable[str] = ()) -> set[str]:
        marks, again, fresh = self._uow.data.processed, set(replayed), set()
        for key in sorted(set(keys)):
            if key not in marks or (marks[key] and key in again):
                marks[key] = False
                fresh.add(key)
        return fresh

    async def mark_failed(self, keys: Sequence[str], *, now: float) -> None:
        for key in keys:
            self._uow.data.processed[key] = True


class MemoryTimers:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    async def due_leads(self, *, now: float, limit: int) -> list[str]:
        timers = self._uow.data.timers
        due = sorted((t.due_at, i) for i, (_, t) in timers.items() if t.due_at <= now)[:limit]
        return list(dict.fromkeys(timers[i][0] for _, i in due))

    async def claim_due(self, *, now: float, limit: int,
                        leads: Collection[str] | None = None) -> list[DueTimer]:
        timers = self._uow.data.timers
        due = sorted((t.due_at, i) for i, (lead, t) in timers.items()
                     if t.due_at <= now and (leads is None or lead in leads))[:limit]
        return [DueTimer(i, *timers.pop(i)) for _, i in due]

    async def count_due(self, *, now: float) -> int:
        return sum(1 for _, t in self._uow.data.timers.values() if t.due_at <= now)


class MemoryUnitOfWork:
    """A transaction over a `MemoryStore`: the block works on a copy, committed on a normal
    exit (the outbox rows appended, the relay woken), dropped on an exception."""

    def __init__(self, store: MemoryStore, topics: Topics | None = None,
                 outbox_ready: asyncio.Event | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.topics = store, topics or Topics()
        self.outbox_ready = outbox_ready or asyncio.Event()
        self.clock = clock
        self.leads, self.events = MemoryLeads(self), MemoryProcessedEvents(self)
        self.timers = MemoryTimers(self)
        self._data: MemoryStore | None = None
        self.pending: list[Outgoing] = []
        self._now: float | None = None

    @property
    def data(self) -> MemoryStore:
        if self._data is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        return self._data

    async def __aenter__(self) -> Self:
        self._data, self.pending, self._now = copy.deepcopy(self.store), [], None
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        data, self._data = self.data, None
        if exc_type is not None:
            return
        data.outbox += self.pending
        data.commits += 1
        self.store.__dict__.update(data.__dict__)
        if self.pending:
            self.outbox_ready.set()

    async def now(self) -> float:
        if self._now is None:
            self._now = self.clock() + self.data.clock_offset
        return self._now

    async def advance_clock(self, seconds: float) -> float:
        self.data.clock_offset += seconds
        self._now = None
        return self.data.clock_offset

    async def clock_offset(self) -> float:
        return self.data.clock_offset

    async def reset_clock(self) -> None:
        self.data.clock_offset = 0.0
        self._now = None

    def publish(self, *records: Outgoing) -> None:
        self.pending.extend(records)
