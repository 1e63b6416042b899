"""One contract for both units of work (adapters/memory.py and the PostgreSQL one,
adapters/unit_of_work.py), so the in-memory one the handler tests use cannot drift from the real
one: one row per message id, leases as fencing tokens, the guarded finish, the scrubbing of
erased leads, suppressions that only a newer record changes, and the outbox written at commit
or not at all. The PostgreSQL runs are `integration` (the session's PostgreSQL)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.common.clock import ControllableClock
from services.common.db.outbox import Outgoing
from services.dispatch.adapters import tables as t
from services.dispatch.adapters.memory import MemoryStore, MemoryUnitOfWork
from services.dispatch.adapters.migrate import upgrade
from services.dispatch.adapters.unit_of_work import PostgresUnitOfWork
from services.dispatch.domain.deliveries import NewDelivery
from services.dispatch.domain.suppressions import Change
from services.dispatch.service_layer.unit_of_work import UnitOfWork
from tests.support import migrated_schema

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
RECORD = Outgoing("t.events", b"lead-1", b"{}", [("ce_type", "message.sent")])


@dataclass
class Backend:
    uow: Callable[[], UnitOfWork]
    outbox_ready: asyncio.Event
    published: Callable[[], object]  # an awaitable: the committed outbox records


def new(message_id: str, lead: str = "lead-1", channel: str = "email") -> NewDelivery:
    return NewDelivery(message_id, lead, channel, b'{"x": 1}', "t.dispatch", 0, 7)


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    clock, ready = ControllableClock(T0), asyncio.Event()
    if request.param == "memory":
        store = MemoryStore()

        async def memory_outbox() -> list[Outgoing]:
            return list(store.outbox)
        yield Backend(functools.partial(MemoryUnitOfWork, store, ready, clock), ready,
                      memory_outbox)
        return
    database_url = request.getfixturevalue("database_url")
    async with migrated_schema(database_url, upgrade, "dc") as engine:
        async def sql_outbox() -> list[Outgoing]:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(t.outbox).order_by(t.outbox.c.id))).all()
            return [Outgoing(r.topic, r.key, r.value, [(h[0], h[1]) for h in r.headers])
                    for r in rows]
        yield Backend(functools.partial(PostgresUnitOfWork, engine, ready, clock), ready,
                      sql_outbox)


async def test_a_message_id_is_inserted_once(backend: Backend) -> None:
    async with backend.uow() as uow:
        assert await uow.deliveries.insert(rows=[new("m-1"), new("m-1"), new("m-2")],
                                           now=T0) == {"m-1", "m-2"}
    async with backend.uow() as uow:
        assert await uow.deliveries.insert(rows=[new("m-1")], now=LATER) == set()
        row = await uow.deliveries.get(message_id="m-1")
        assert await uow.deliveries.count_by_status() == {"pending": 2}
    assert row is not None and (row.status, row.attempts, row.payload) == ("pending", 0,
                                                                           b'{"x": 1}')


async def test_a_claim_leases_its_rows_and_only_its_lease_starts_them(backend: Backend) -> None:
    lease1, lease2 = T0 + timedelta(minutes=2), LATER + timedelta(minutes=2)
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1")], now=T0)
        (claimed,) = await uow.deliveries.claim_due(channel="email", now=T0, limit=10,
                                                    lease_until=lease1)
        assert claimed.lease == lease1
        assert await uow.deliveries.claim_due(channel="email", now=T0, limit=10,
                                              lease_until=lease1) == []
        assert await uow.deliveries.claim_due(channel="sms", now=LATER, limit=10,
                                              lease_until=lease2) == []
    async with backend.uow() as uow:  # the lease ran out: another worker claims it
        (again,) = await uow.deliveries.claim_due(channel="email", now=LATER, limit=10,
                                                  lease_until=lease2)
        assert again.lease == lease2
        assert await uow.deliveries.start_attempts(claims={"m-1": lease1}, now=LATER) == {}
        assert not await uow.deliveries.finish(message_id="m-1", status="failed", now=LATER,
                                               error="x", held=("pending", lease1))
        assert not await uow.deliveries.reschedule(message_id="m-1", at=LATER, now=LATER,
                                                   error="x", status="pending", lease=lease1)
        assert await uow.deliveries.start_attempts(claims={"m-1": lease2}, now=LATER) == {
            "m-1": 1}
        assert await uow.deliveries.start_attempts(claims={"m-1": lease2}, now=LATER) == {}


async def test_sent_and_failed_are_final_and_forget_the_command(backend: Backend) -> None:
    lease = T0 + timedelta(minutes=2)
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1"), new("m-2")], now=T0)
        await uow.deliveries.claim_due(channel="email", now=T0, limit=10, lease_until=lease)
        await uow.deliveries.start_attempts(claims={"m-1": lease, "m-2": lease}, now=T0)
        await uow.deliveries.finish_sent(sent={"m-1": "p-1"}, now=T0)
        assert await uow.deliveries.finish(message_id="m-2", status="failed", now=T0,
                                           error="smtp_5xx", attempts=1,
                                           held=("sending", None))
        with pytest.raises(ValueError, match="final status"):
            await uow.deliveries.finish(message_id="m-2", status="pending", now=T0)
        sent = await uow.deliveries.get(message_id="m-1")
        failed = await uow.deliveries.get(message_id="m-2")
    assert sent is not None and (sent.status, sent.provider_id, sent.payload, sent.attempts) \
        == ("sent", "p-1", None, 1)
    assert failed is not None and (failed.status, failed.last_error, failed.payload) == (
        "failed", "smtp_5xx", None)


async def test_stale_sending_rows_are_found_and_settled(backend: Backend) -> None:
    lease = T0 + timedelta(minutes=2)
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1")], now=T0)
        await uow.deliveries.claim_due(channel="email", now=T0, limit=10, lease_until=lease)
        await uow.deliveries.start_attempts(claims={"m-1": lease}, now=T0)
    async with backend.uow() as uow:
        assert await uow.deliveries.claim_stale_sending(before=T0, limit=10) == []
        (stale,) = await uow.deliveries.claim_stale_sending(before=LATER, limit=10)
        assert (stale.status, stale.attempts, stale.lease) == ("sending", 1, None)
        assert await uow.deliveries.reschedule(message_id="m-1", at=LATER, now=LATER,
                                               error="resent", status="sending")
        row = await uow.deliveries.get(message_id="m-1")
    assert row is not None and (row.status, row.attempts) == ("pending", 1)


async def test_a_replay_retries_failed_deliveries_but_never_unconfirmed_ones(
        backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1"), new("m-2")], now=T0)
        await uow.deliveries.finish(message_id="m-1", status="failed", now=T0,
                                    error="template_error")
        await uow.deliveries.finish(message_id="m-2", status="failed", now=T0,
                                    error="sent_unconfirmed: interrupted")
    async with backend.uow() as uow:
        assert await uow.deliveries.retry_failed(rows=[new("m-1"), new("m-2")], now=LATER,
                                                 unconfirmed="sent_unconfirmed") == {"m-1"}
        row = await uow.deliveries.get(message_id="m-1")
    assert row is not None and (row.status, row.attempts, row.payload) == (
        "pending", 0, b'{"x": 1}')


async def test_only_a_newer_record_changes_a_suppression(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.suppressions.apply(changes=[
            Change("lead-1", "email", "unsubscribed", LATER),
            Change("lead-2", "email", "complained", T0), Change("lead-2", "sms", "opted_out", T0)])
        await uow.suppressions.apply(changes=[
            Change("lead-1", "email", None, T0),  # an older consent: changes nothing
            Change("lead-2", "email", None, LATER),  # consent never lifts a complaint
            Change("lead-2", "sms", None, LATER)])
        found = await uow.suppressions.for_leads(lead_ids=["lead-1", "lead-2", "lead-3"])
    assert found == {"lead-1": {"email": "unsubscribed"}, "lead-2": {"email": "complained"}}


async def test_an_older_suppression_does_not_replace_a_newer_one(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.suppressions.apply(changes=[
            Change("lead-1", "email", "unsubscribed", LATER),
            Change("lead-2", "email", "opted_out", T0)])
        await uow.suppressions.apply(changes=[
            Change("lead-1", "email", "complained", T0),  # older: changes nothing
            Change("lead-2", "email", "complained", LATER)])  # newer: replaces
        found = await uow.suppressions.for_leads(lead_ids=["lead-1", "lead-2"])
    assert found == {"lead-1": {"email": "unsubscribed"}, "lead-2": {"email": "complained"}}


async def test_an_erasure_scrubs_every_delivery_that_is_not_mid_call(backend: Backend) -> None:
    lease = T0 + timedelta(minutes=2)
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1")], now=T0)
        await uow.deliveries.claim_due(channel="email", now=T0, limit=1, lease_until=lease)
        await uow.deliveries.start_attempts(claims={"m-1": lease}, now=T0)  # mid-call
        await uow.deliveries.insert(rows=[new("m-2"), new("m-3", "lead-2")], now=T0)
        assert await uow.suppressions.erase(lead_ids=["lead-1"], now=T0) == 1
        waiting = await uow.deliveries.get(message_id="m-2")
        calling = await uow.deliveries.get(message_id="m-1")
        await uow.deliveries.finish_sent(sent={"m-1": "p-1"}, now=LATER)  # the call ends
        called = await uow.deliveries.get(message_id="m-1")
        other = await uow.deliveries.get(message_id="m-3")
        found = await uow.suppressions.for_leads(lead_ids=["lead-1"])
    assert waiting is not None and (waiting.status, waiting.payload) == ("suppressed", None)
    assert waiting.lead_id.startswith("erased-")
    assert calling is not None and (calling.status, calling.lead_id) == ("sending", "lead-1")
    assert called is not None and called.status == "sent"
    assert called.lead_id.startswith("erased-")
    assert other is not None and other.lead_id == "lead-2"
    assert found == {"lead-1": {"*": "erased"}}


async def test_a_finish_of_an_erased_lead_is_not_told(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.suppressions.erase(lead_ids=["lead-1"], now=T0)
        await uow.deliveries.insert(rows=[new("m-1")], now=T0)  # a command that came late
        assert not await uow.deliveries.finish(message_id="m-1", status="suppressed", now=T0,
                                               error="erased")


async def test_published_records_are_written_at_commit_and_wake_the_relay(
        backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1")], now=T0)
        uow.publish(RECORD)
        assert not backend.outbox_ready.is_set()
    assert backend.outbox_ready.is_set()
    assert await backend.published() == [RECORD]  # type: ignore[misc]


async def failing_unit_of_work(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.deliveries.insert(rows=[new("m-1")], now=T0)
        await uow.suppressions.suppress(lead_id="lead-1", channel="sms", reason="opted_out",
                                        at=T0)
        uow.publish(RECORD)
        raise RuntimeError("boom")


async def test_an_exception_rolls_back_the_rows_and_the_records(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await failing_unit_of_work(backend)
    async with backend.uow() as uow:
        assert await uow.deliveries.get(message_id="m-1") is None
        assert await uow.suppressions.for_leads(lead_ids=["lead-1"]) == {}
    assert not backend.outbox_ready.is_set()
    assert await backend.published() == []  # type: ignore[misc]
