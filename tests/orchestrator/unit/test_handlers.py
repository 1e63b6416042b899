"""The service layer on the in-memory unit of work (milliseconds, no PostgreSQL or Kafka): the
exactly-once rules of the scored-event batch, the failure rollback, erasure and timers."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from schemas.records import SendMessage, StageChanged
from services.common.kafka.deadletter import REPLAYED_HEADER
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.memory import MemoryStore, MemoryUnitOfWork
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.lead import Lead
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import EventMatch, Program, Step, Trigger
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.service_layer.handlers import Handlers, NotFound, Refused
from tests.orchestrator.support import Choking
from tests.support import scored_record

T0 = 1_790_000_000.0
H, D = 3600, 86400
TOPICS = Topics()
PRICING = Program(
    id="pricing", version=1, name="Pricing abandoner",
    trigger=Trigger("event", event=EventMatch(
        frozenset({"web.page_viewed"}), lambda d: str(d.get("path", "")).startswith("/pricing"))),
    steps=(Step("wait-1h", "wait", seconds=H),
           Step("email-1", "send", channel="email", template="pricing-followup")))


def decider() -> Decider:
    return Decider([PRICING], ContactPolicy(caps=(), quiet_hours=None))


def handlers(store: MemoryStore, the_decider: Decider | None = None) -> Handlers:
    return Handlers(lambda: MemoryUnitOfWork(store, TOPICS, clock=lambda: T0),
                    the_decider or decider(), TOPICS, OrchestratorMetrics(new_registry()))


def record(offset: int, lead: str, etype: str, *, eid: str | None = None,
           replayed: bool = False, **data: Any) -> ConsumerRecord[bytes, bytes]:
    value = scored_record({"id": eid or f"e{offset}", "source": "t", "type": etype,
                           "subject": lead, "time": "2026-09-21T10:00:00Z", "data": data})
    headers = [(REPLAYED_HEADER, b"0/1")] if replayed else []
    return ConsumerRecord("scored", 0, offset, 0, 0, lead.encode(), value, None, len(lead),
                          len(value), headers)


def state(store: MemoryStore) -> dict[str, Any]:
    shot = copy.deepcopy(store.__dict__)
    del shot["commits"]
    return shot


def topics_of(store: MemoryStore) -> list[str]:
    return [o.topic for o in store.outbox]


BATCH = [record(0, "lead-1", "crm.lead_upserted", email="a@x.io"),
         record(1, "lead-1", "web.page_viewed", path="/pricing"),
         record(2, "lead-2", "web.form_submitted", form_id="f", form_type="demo_request"),
         record(3, "lead-2", "web.page_viewed", path="/blog")]


async def test_a_redelivered_batch_changes_nothing() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events(BATCH)
    before = state(store)
    assert set(before["leads"]) == {"lead-1", "lead-2"} and before["timers"]
    await h.handle_scored_events(BATCH)
    await h.handle_scored_events([BATCH[3], BATCH[1]])
    assert state(store) == before
    assert h.metrics.events.labels("duplicate")._value.get() == 6


async def test_the_same_event_twice_in_one_batch_is_decided_once() -> None:
    store = MemoryStore()
    await handlers(store).handle_scored_events([BATCH[1], BATCH[1]])
    assert topics_of(store).count(TOPICS.stages) == 1
    assert len(store.timers) == 1


async def test_a_decision_that_raises_is_dead_lettered_and_the_lead_stays_as_before() -> None:
    store = MemoryStore()
    h = handlers(store, Choking([PRICING], ContactPolicy(caps=(), quiet_hours=None)))
    await h.handle_scored_events(BATCH[:1])
    before = copy.deepcopy(store.leads["lead-1"])
    await h.handle_scored_events([record(5, "lead-1", "web.choke"), BATCH[1], BATCH[2]])
    letters = [orjson.loads(o.value) for o in store.outbox if o.topic == TOPICS.deadletter]
    assert [(m["error"], m["origin"]["offset"]) for m in letters] == [
        ("KeyError: 'company_size'", 5)]
    lead = Lead.from_dict(store.leads["lead-1"])
    assert "half-decided" not in lead.tags  # the failed decision left nothing behind
    assert lead.enrollments["pricing"].active  # the next event was decided on the lead as
    assert lead.profile == Lead.from_dict(before).profile  # it was before the failure
    assert "lead-2" in store.leads  # the rest of the batch went on
    assert h.metrics.events.labels("dead_lettered")._value.get() == 1


async def test_a_failed_event_is_decided_again_only_when_replayed() -> None:
    store = MemoryStore()
    buggy = handlers(store, Choking([PRICING], ContactPolicy(caps=(), quiet_hours=None)))
    await buggy.handle_scored_events([record(0, "lead-1", "web.choke", eid="c")])
    await buggy.handle_scored_events([record(0, "lead-1", "web.choke", eid="c")])
    assert topics_of(store).count(TOPICS.deadletter) == 1  # a redelivery: nothing
    fixed = handlers(store)
    await fixed.handle_scored_events([record(9, "lead-1", "web.choke", eid="c", replayed=True)])
    assert "lead-1" in store.leads
    await fixed.handle_scored_events([record(9, "lead-1", "web.choke", eid="c", replayed=True)])
    assert fixed.metrics.events.labels("duplicate")._value.get() == 1


async def test_an_unparseable_record_is_dead_lettered_with_its_bytes() -> None:
    store = MemoryStore()
    bad = ConsumerRecord("scored", 0, 7, 0, 0, b"k", b"not json", None, 1, 8, [])
    await handlers(store).handle_scored_events([bad, BATCH[0]])
    (letter,) = [orjson.loads(o.value) for o in store.outbox if o.topic == TOPICS.deadletter]
    assert letter["error"].startswith("value is not JSON") and "lead-1" in store.leads


async def test_erasure_forgets_the_lead_and_what_came_before_it_in_the_batch() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events([BATCH[0]])
    assert store.history and store.leads
    await h.handle_scored_events([BATCH[1], record(4, "lead-1", "lead.erased"), BATCH[2]])
    assert set(store.leads) == {"lead-2"}
    # the page view before the erasure in the batch left nothing: no stage change published
    # for it, no enrollment, no timer; the first batch's history is kept, anonymised
    assert [o.topic for o in store.outbox if o.key == b"lead-1"] == [TOPICS.stages]
    assert not [t for t in store.timers.values() if t[0] == "lead-1"]
    assert not [e for e in store.enrollments.values() if e["lead_id"] == "lead-1"]
    assert sorted(row["lead_id"][:7] for row in store.history) == ["erased-", "lead-2"]
    # events after the erasure start a new, empty lead
    await h.handle_scored_events([record(6, "lead-1", "web.page_viewed", path="/blog")])
    assert Lead.from_dict(store.leads["lead-1"]).profile == {}


async def test_timers_fire_once() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events(BATCH[:2])
    assert await h.fire_timers() == 0  # not due yet
    async with MemoryUnitOfWork(store, TOPICS, clock=lambda: T0) as uow:
        await uow.advance_clock(H + 1)
    assert await h.fire_timers() == 1
    assert await h.fire_timers() == 0
    (cmd,) = [SendMessage.from_bytes(o.value) for o in store.outbox
              if o.topic == TOPICS.dispatch]  # through the contract dispatch parses with
    assert (cmd.lead_id, cmd.template, cmd.step_id) == ("lead-1", "pricing-followup", "email-1")
    stages = [StageChanged.from_bytes(o.value) for o in store.outbox if o.topic == TOPICS.stages]
    assert [(s.lead_id, s.from_stage, s.to_stage) for s in stages] == [("lead-1", None, "lead")]


async def test_a_failing_unit_of_work_rolls_everything_back_and_counts_nothing() -> None:
    store = MemoryStore()
    h = handlers(store)

    class Broken(MemoryUnitOfWork):
        def publish(self, *records: Any) -> None:
            raise ConnectionError("database went away")

    h.uow = lambda: Broken(store, TOPICS, clock=lambda: T0)
    with pytest.raises(ConnectionError):
        await h.handle_scored_events(BATCH)
    assert state(store) == state(MemoryStore())
    assert h.metrics.events.labels("processed")._value.get() == 0


async def test_enroll_unenroll_and_erase_through_the_api_handlers() -> None:
    store = MemoryStore()
    h = handlers(store)
    with pytest.raises(NotFound):
        await h.enroll("lead-9", "nope")
    enr = await h.enroll("lead-9", "pricing")
    assert (enr.status, enr.step, enr.step_id) == ("active", 0, "wait-1h")
    # what the API reads (the enrollments table) names the step by id, not by index
    assert [r["step_id"] for r in store.enrollments.values()] == ["wait-1h"]
    with pytest.raises(Refused, match="not enrolled: already enrolled"):
        await h.enroll("lead-9", "pricing")
    await h.unenroll("lead-9", "pricing")
    with pytest.raises(NotFound):
        await h.unenroll("lead-9", "pricing")
    assert Lead.from_dict(store.leads["lead-9"]).enrollments["pricing"].exit_reason \
        == "removed manually"
    assert await h.erase("lead-9") is True
    assert await h.erase("lead-9") is False
    erased = [orjson.loads(o.value) for o in store.outbox if o.topic == TOPICS.events]
    assert [(e["type"], e["subject"]) for e in erased] == [("lead.erased", "lead-9")] * 2


async def test_inbound_stop_becomes_an_opt_out_event_for_each_lead_with_the_number() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events([record(0, "lead-a", "crm.lead_upserted", phone="+1415"),
                                  record(1, "lead-b", "crm.lead_upserted", phone="+1415")])
    reply = await h.inbound_sms({"From": "+1415", "Body": "stop", "MessageSid": "SM1"})
    assert reply is None
    events = [orjson.loads(o.value) for o in store.outbox if o.topic == TOPICS.events]
    assert [(e["type"], e["subject"]) for e in events] == [("sms.opted_out", "lead-a"),
                                                           ("sms.opted_out", "lead-b")]
    assert "Reply STOP" in (await h.inbound_sms({"From": "+1415", "Body": "help"}) or "")


async def test_a_clock_step_answers_once_the_timers_it_made_due_are_decided() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events(BATCH[:2])  # the pricing program waits an hour
    moved = await h.advance_clock(H + 1)
    assert (moved["offset_seconds"], moved["now"]) == (H + 1, T0 + H + 1)
    assert (moved["timers_fired"], moved["timers_due"]) == (1, 0)
    assert [o.topic for o in store.outbox].count(TOPICS.dispatch) == 1  # sent, not pending
    assert await h.clock() == {"offset_seconds": H + 1, "now": T0 + H + 1}
    assert await h.reset_clock() == {"offset_seconds": 0.0, "now": T0}
    nothing_due = await h.advance_clock(60, settle_seconds=0)
    assert (nothing_due["timers_fired"], nothing_due["timers_due"]) == (0, 0)


async def test_a_merge_hands_the_anonymous_enrollment_to_the_known_lead_which_gets_the_email(
        ) -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events([record(0, "anon-1", "web.page_viewed", path="/pricing")])
    await h.handle_scored_events([
        record(1, "user-1", "crm.lead_upserted", email="ada@x.io"),
        record(2, "user-1", "lead.merged", eid="merge-1", **{"from": "anon-1"}),
        record(3, "user-1", "lead.merged", eid="merge-1", **{"from": "anon-1"})])  # again
    assert set(store.leads) == {"user-1"}
    merged = Lead.from_dict(store.leads["user-1"])
    assert merged.enrollments["pricing"].active and merged.profile["email"] == "ada@x.io"
    assert ("user-1", "merged from anon-1") in [(r["lead_id"], r["cause"]) for r in store.history]
    assert {r["lead_id"] for r in store.history} == {"user-1"}  # both histories, one lead
    async with MemoryUnitOfWork(store, TOPICS, clock=lambda: T0) as uow:
        await uow.advance_clock(H + 1)
    assert await h.fire_timers() == 1
    (cmd,) = [SendMessage.from_bytes(o.value) for o in store.outbox
              if o.topic == TOPICS.dispatch]
    assert (cmd.lead_id, cmd.template) == ("user-1", "pricing-followup")


async def test_a_merge_in_the_batch_of_the_absorbed_leads_events_loses_none_of_them() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events([
        record(0, "anon-1", "web.page_viewed", path="/pricing"),
        record(1, "user-1", "lead.merged", eid="merge-1", **{"from": "anon-1"})])
    assert set(store.leads) == {"user-1"}
    assert Lead.from_dict(store.leads["user-1"]).enrollments["pricing"].active
    assert {lid for lid, _ in store.timers.values()} == {"user-1"}


async def test_a_late_event_of_a_merged_away_id_counts_for_the_lead_it_went_into() -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events([
        record(0, "anon-1", "web.page_viewed", path="/blog"),
        record(1, "user-1", "lead.merged", eid="merge-1", **{"from": "anon-1"}),
        record(2, "anon-1", "web.page_viewed", eid="late-1", path="/pricing")])  # same batch
    await h.handle_scored_events([record(3, "anon-1", "email.opened", message_id="m")])
    assert set(store.leads) == {"user-1"}  # no second record for the absorbed id
    lead = Lead.from_dict(store.leads["user-1"])
    assert lead.enrollments["pricing"].active  # the late pricing view started the program
    await h.erase("user-1")
    async with MemoryUnitOfWork(store, TOPICS, clock=lambda: T0) as uow:
        assert await uow.leads.merged_into(["anon-1"]) == {}


async def test_an_id_unknown_here_when_it_merged_still_sends_its_late_events_to_the_lead(
        ) -> None:
    store = MemoryStore()
    h = handlers(store)
    await h.handle_scored_events([
        record(0, "user-1", "crm.lead_upserted", email="ada@x.io"),
        record(1, "user-1", "lead.merged", eid="merge-1", **{"from": "anon-1"})])
    # the visitor's partition was behind: its pricing view arrives after the merge
    await h.handle_scored_events([record(2, "anon-1", "web.page_viewed", path="/pricing")])
    assert set(store.leads) == {"user-1"}
    assert Lead.from_dict(store.leads["user-1"]).enrollments["pricing"].active
