"""One contract for both units of work: the in-memory one (adapters/memory.py, what the
service-layer unit tests run on) and the PostgreSQL one (adapters/unit_of_work.py), so the fake
cannot drift from the real thing. The PostgreSQL runs are integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from services.common.db.outbox import Outgoing
from services.common.kafka.topics import Topics
from services.orchestrator.adapters.memory import MemoryStore, MemoryUnitOfWork
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.adapters.unit_of_work import PgUnitOfWork
from services.orchestrator.domain.effects import Command, Effects, Note, StageChange, Timer
from services.orchestrator.domain.lead import Enrollment, Lead
from services.orchestrator.service_layer.unit_of_work import UnitOfWork
from tests.support import migrated_schema

TOPICS = Topics()


@dataclass
class Backend:
    uow: Callable[[], UnitOfWork]
    ready: asyncio.Event
    outbox: Callable[[], Any]  # async () -> [(topic, key)] committed


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    ready = asyncio.Event()
    if request.param == "memory":
        store = MemoryStore()

        async def memory_outbox() -> list[tuple[str, bytes | None]]:
            return [(o.topic, o.key) for o in store.outbox]

        yield Backend(lambda: MemoryUnitOfWork(store, TOPICS, ready), ready, memory_outbox)
        return
    database_url = request.getfixturevalue("database_url")
    async with migrated_schema(database_url, upgrade, "ocontract") as engine:
        async def pg_outbox() -> list[tuple[str, bytes | None]]:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT topic, key FROM outbox ORDER BY id"))
                return [(r.topic, r.key) for r in rows]

        yield Backend(lambda: PgUnitOfWork(engine, TOPICS, ready), ready, pg_outbox)


def lead(lead_id: str, **profile: Any) -> Lead:
    the_lead = Lead(lead_id, stage_entered_at=1e9, created_at=1e9, profile=dict(profile))
    the_lead.enrollments["p"] = Enrollment("p", 1, entered_at=1e9, step=1, step_id="s")
    return the_lead


def effects(lead_id: str, now: float, *, timer_in: float = 60.0) -> Effects:
    return Effects(
        commands=[Command("m-1", lead_id, "email", "p", 1, "s", "t", {}, now)],
        stage_changes=[StageChange(lead_id, None, "lead", now, "first seen")],
        timers=[Timer(now + timer_in, "step", "p", 1)],
        notes=[Note("p", "s", "email", "sent", None, now, message_id="m-1")])


async def test_saved_leads_come_back_equal(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.leads.save({"l-1": lead("l-1", phone="+1")}, [])
    async with backend.uow() as uow:
        assert await uow.leads.lock(["l-1", "l-none"]) == {"l-1": lead("l-1", phone="+1")}
        assert await uow.leads.get("l-1") == lead("l-1", phone="+1")
        assert await uow.leads.get("l-none") is None
        assert await uow.leads.with_phone("+1") == ["l-1"]
        assert await uow.leads.with_phone("+2") == []


async def test_an_exception_rolls_everything_back_and_wakes_nobody(backend: Backend) -> None:
    async def fails() -> None:
        async with backend.uow() as uow:
            now = await uow.now()
            await uow.events.claim(["k"], now=now)
            await uow.leads.save({"l-1": lead("l-1")}, [("l-1", effects("l-1", now))])
            uow.publish(Outgoing(TOPICS.events, b"l-1", b"{}", []))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fails()
    assert not backend.ready.is_set()
    assert await backend.outbox() == []
    async with backend.uow() as uow:
        assert await uow.leads.get("l-1") is None
        assert await uow.events.claim(["k"], now=await uow.now()) == {"k"}


async def test_a_commit_writes_the_outbox_and_wakes_the_relay(backend: Backend) -> None:
    async with backend.uow() as uow:
        now = await uow.now()
        await uow.leads.save({"l-1": lead("l-1")}, [("l-1", effects("l-1", now))])
        uow.publish(Outgoing(TOPICS.events, b"l-1", b"{}", []))
    assert backend.ready.is_set()
    assert sorted(await backend.outbox()) == sorted([
        (TOPICS.dispatch, b"l-1"), (TOPICS.stages, b"l-1"), (TOPICS.events, b"l-1")])
    async with backend.uow() as uow:
        assert await uow.leads.sends(["m-1", "m-2"]) == {"m-1": ("p", "s")}


async def test_processed_marks_redelivery_failure_and_replay(backend: Backend) -> None:
    async with backend.uow() as uow:
        now = await uow.now()
        assert await uow.events.claim(["a", "b", "a"], now=now) == {"a", "b"}
        await uow.events.mark_failed(["b"], now=now)
    async with backend.uow() as uow:
        now = await uow.now()
        assert await uow.events.claim(["a", "b", "c"], now=now) == {"c"}
        assert await uow.events.claim(["a", "b"], now=now, replayed=["a", "b"]) == {"b"}
    async with backend.uow() as uow:  # decided after the replay: a second replay is a duplicate
        assert await uow.events.claim(["b"], now=await uow.now(), replayed=["b"]) == set()


async def test_due_timers_are_taken_once_and_come_back_on_rollback(backend: Backend) -> None:
    async with backend.uow() as uow:
        now = await uow.now()
        await uow.leads.save({"l-1": lead("l-1")}, [("l-1", effects("l-1", now, timer_in=-1))])
        await uow.leads.save({"l-2": lead("l-2")}, [("l-2", effects("l-2", now))])
    taken = []

    async def crashes() -> None:
        async with backend.uow() as uow:
            taken.extend(await uow.timers.claim_due(now=await uow.now(), limit=10))
            raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        await crashes()
    assert len(taken) == 1
    async with backend.uow() as uow:
        (due,) = await uow.timers.claim_due(now=await uow.now(), limit=10)
        assert (due.lead_id, due.timer.kind, due.timer.program_id) == ("l-1", "step", "p")
    async with backend.uow() as uow:
        assert await uow.timers.claim_due(now=await uow.now(), limit=10) == []


async def test_erasure_forgets_the_lead_its_timers_and_its_pending_commands(
        backend: Backend) -> None:
    async with backend.uow() as uow:
        now = await uow.now()
        await uow.leads.save({"l-1": lead("l-1", phone="+1"), "l-2": lead("l-2")},
                             [("l-1", effects("l-1", now, timer_in=-1)),
                              ("l-2", effects("l-2", now))])
    async with backend.uow() as uow:
        assert await uow.leads.erase("l-1", now=await uow.now()) is True
        assert await uow.leads.erase("l-unknown", now=await uow.now()) is False
    async with backend.uow() as uow:
        assert await uow.leads.get("l-1") is None and await uow.leads.get("l-2") is not None
        assert await uow.leads.with_phone("+1") == []
        due = await uow.timers.claim_due(now=await uow.now() + 120, limit=10)
        assert [d.lead_id for d in due] == ["l-2"]
    outbox = await backend.outbox()
    assert (TOPICS.dispatch, b"l-1") not in outbox and (TOPICS.dispatch, b"l-2") in outbox
    assert (TOPICS.stages, b"l-1") in outbox  # published facts stay


async def test_the_shared_clock_moves_forward(backend: Backend) -> None:
    async with backend.uow() as uow:
        before = await uow.now()
        assert await uow.advance_clock(3600) == 3600
        assert await uow.now() >= before + 3600
    async with backend.uow() as uow:
        assert await uow.now() >= before + 3600


async def test_a_lead_keeps_one_score_timer_per_model_the_newest(backend: Backend) -> None:
    def score_timer(due: float, model: str = "b2b") -> Effects:
        return Effects(timers=[Timer(due, "score", model)])

    async with backend.uow() as uow:  # two decisions of one batch, then a later one
        await uow.leads.save({"l-1": lead("l-1")}, [("l-1", score_timer(1e9 + 50)),
                                                    ("l-1", score_timer(1e9 + 80)),
                                                    ("l-1", score_timer(1e9 + 10, "pl"))])
    async with backend.uow() as uow:
        await uow.leads.save({}, [("l-1", score_timer(1e9 + 60))])
    async with backend.uow() as uow:
        due = await uow.timers.claim_due(now=1e9 + 1000, limit=10)
    assert sorted((d.lead_id, d.timer.program_id, d.timer.due_at) for d in due) == [
        ("l-1", "b2b", 1e9 + 60), ("l-1", "pl", 1e9 + 10)]


async def test_the_leads_of_due_timers_then_their_timers(backend: Backend) -> None:
    """What firing timers takes, in the order decisions take it: the leads first, then their
    timers (a lead's timers only)."""
    async with backend.uow() as uow:
        await uow.leads.save({"l-1": lead("l-1"), "l-2": lead("l-2")}, [
            ("l-2", Effects(timers=[Timer(1e9 + 10, "step", "p", 1)])),
            ("l-1", Effects(timers=[Timer(1e9 + 20, "step", "p", 1),
                                    Timer(1e9 + 5000, "step", "p", 2)]))])
    async with backend.uow() as uow:
        assert await uow.timers.due_leads(now=1e9 + 100, limit=10) == ["l-2", "l-1"]
        assert await uow.timers.due_leads(now=1e9 + 15, limit=10) == ["l-2"]
        taken = await uow.timers.claim_due(now=1e9 + 100, limit=10, leads=["l-1"])
        assert [(d.lead_id, d.timer.due_at) for d in taken] == [("l-1", 1e9 + 20)]
        assert await uow.timers.due_leads(now=1e9 + 100, limit=10) == ["l-2"]


async def test_an_absorbed_lead_goes_and_the_timers_of_its_moved_enrollments_follow(
        backend: Backend) -> None:
    async with backend.uow() as uow:
        now = await uow.now()
        await uow.leads.save({"a-1": lead("a-1"), "a-2": lead("a-2")}, [
            ("a-1", effects("a-1", now, timer_in=-1)),
            ("a-1", Effects(timers=[Timer(now - 1, "score", "b2b"), Timer(now - 1, "step", "q")])),
            ("a-2", effects("a-2", now, timer_in=-1))])
    async with backend.uow() as uow:
        await uow.leads.absorb("a-1", into="l-1", moved=("p",), stages=("lead", "mql"),
                               now=await uow.now())
        await uow.leads.link("a-1", into="l-1", now=await uow.now())
        await uow.leads.save({"l-1": lead("l-1")}, [])
    async with backend.uow() as uow:
        assert await uow.leads.get("a-1") is None
        due = await uow.timers.claim_due(now=await uow.now() + 120, limit=10)
        assert sorted((d.lead_id, d.timer.kind, d.timer.program_id) for d in due) == [
            ("a-2", "step", "p"), ("l-1", "step", "p")]
        assert await uow.leads.merged_into(["a-1", "a-2"]) == {"a-1": "l-1"}
    async with backend.uow() as uow:  # a chain: what went into l-1 follows it into l-2
        await uow.leads.link("l-1", into="l-2", now=await uow.now())
        assert await uow.leads.merged_into(["a-1", "l-1"]) == {"a-1": "l-2", "l-1": "l-2"}
        await uow.leads.erase("l-2", now=await uow.now())
        assert await uow.leads.merged_into(["a-1", "l-1"]) == {}
