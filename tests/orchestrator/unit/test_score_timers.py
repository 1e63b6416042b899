"""Scores that age on their own, on the in-memory unit of work: a scored event's `next_crossing`
becomes one `score` timer per lead and model (a later event moves it), the due timer publishes
`lead.score_due` for scoring, and the crossing that comes back moves the stage with its reason,
at the time it happened, and starts the programs that trigger on a downward crossing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.cloudevent import score_due_event
from schemas.records import SendMessage, StageChanged
from schemas.vocabulary import SCORE_DUE_EVENT, rfc3339
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.memory import MemoryStore, MemoryUnitOfWork
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.domain.stages import score_at
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.service_layer.handlers import Handlers
from tests.support import model_score, scored_record

T0 = 1_790_000_000.0
D = 86400.0
TOPICS = Topics()
COOLING = Program(id="cooling", version=1, name="Cooling off",
                  trigger=Trigger("threshold", model="b2b", threshold="mql", direction="down"),
                  steps=(Step("still-there", "send", channel="email", template="reengage"),))
WARM = Program(id="warm", version=1, name="Just qualified",
               trigger=Trigger("threshold", model="b2b", threshold="mql"),
               steps=(Step("hello", "send", channel="email", template="hello"),))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def handlers(store: MemoryStore, clock: Clock) -> Handlers:
    decider = Decider([COOLING, WARM], ContactPolicy(caps=(), quiet_hours=None))
    return Handlers(lambda: MemoryUnitOfWork(store, TOPICS, clock=clock), decider, TOPICS,
                    OrchestratorMetrics(new_registry()))


def scored(offset: int, etype: str, at: float, total: float, *, crossing: float | None,
           crossed: tuple[tuple[str, str], ...] = (), eid: str | None = None,
           **data: Any) -> ConsumerRecord[bytes, bytes]:
    """A scored event of `lead-1` at `at` whose b2b score is `total` (all engagement, 30-day
    half-life, mql at 50) and falls below mql at `crossing` (None: never)."""
    nxt = None if crossing is None else {"threshold": "mql", "direction": "down",
                                         "at": rfc3339(crossing)}
    score = model_score(total, crossed=crossed, half_life=30 * D, thresholds={"mql": 50.0},
                        above=("mql",) if total >= 50 else (), next_crossing=nxt)
    value = scored_record({"id": eid or f"e{offset}", "source": "t", "type": etype,
                           "subject": "lead-1", "time": rfc3339(at), "data": data}, score)
    return ConsumerRecord("scored", 0, offset, 0, 0, b"lead-1", value, None, 6, len(value), [])


def score_timers(store: MemoryStore) -> list[tuple[str, float]]:
    return [(lead, t.due_at) for lead, t in store.timers.values() if t.kind == "score"]


async def test_one_score_timer_per_lead_and_model_moved_by_each_event() -> None:
    store, clock = MemoryStore(), Clock()
    h = handlers(store, clock)
    await h.handle_scored_events([scored(0, "web.page_viewed", T0, 60.0, crossing=T0 + 8 * D,
                                         crossed=(("mql", "up"),), path="/pricing")])
    assert score_timers(store) == [("lead-1", T0 + 8 * D)]
    await h.handle_scored_events([
        scored(1, "web.page_viewed", T0 + D, 70.0, crossing=T0 + 15 * D, path="/blog"),
        scored(2, "web.page_viewed", T0 + D, 80.0, crossing=T0 + 20 * D, path="/docs")])
    assert score_timers(store) == [("lead-1", T0 + 20 * D)]  # the newest, once
    clock.now = T0 + 16 * D  # past the first two crossings: they were moved, nothing fires
    assert await h.fire_timers() == 0
    assert not [o for o in store.outbox if o.topic == TOPICS.events]


async def test_an_event_that_leaves_no_crossing_cancels_it() -> None:
    store, clock = MemoryStore(), Clock()
    h = handlers(store, clock)
    await h.handle_scored_events([scored(0, "web.page_viewed", T0, 60.0, crossing=T0 + 8 * D)])
    await h.handle_scored_events([scored(1, "crm.lead_upserted", T0 + D, 60.0, crossing=None,
                                         email="a@x.io")])
    clock.now = T0 + 9 * D
    assert await h.fire_timers() == 1  # the row fires, and is stale: nothing published
    assert not [o for o in store.outbox if o.topic == TOPICS.events]


async def test_a_due_crossing_asks_scoring_to_score_the_lead_then() -> None:
    store, clock = MemoryStore(), Clock()
    h = handlers(store, clock)
    await h.handle_scored_events([scored(0, "web.page_viewed", T0, 60.0, crossing=T0 + 8 * D)])
    clock.now = T0 + 90 * D  # long past it: the event still says when the crossing was
    assert await h.fire_timers() == 1
    (row,) = [o for o in store.outbox if o.topic == TOPICS.events]
    event = orjson.loads(row.value)
    assert (row.key, event["type"], event["subject"], event["data"]) == \
        (b"lead-1", SCORE_DUE_EVENT, "lead-1", {"model": "b2b"})
    assert event["time"] == rfc3339(T0 + 8 * D)
    # the same if fired again; another lead's crossing in the same second is another event
    assert event["id"].startswith(f"score-due-b2b-{int(T0 + 8 * D)}-")
    assert event["id"] == score_due_event("lead-1", "b2b", T0 + 8 * D)["id"]
    assert event["id"] != score_due_event("lead-2", "b2b", T0 + 8 * D)["id"]
    assert score_timers(store) == []


async def test_the_crossing_moves_the_stage_back_with_why_and_when_and_starts_programs() -> None:
    store, clock = MemoryStore(), Clock()
    h = handlers(store, clock)
    await h.handle_scored_events([
        scored(0, "crm.lead_upserted", T0, 0.0, crossing=None, email="ada@example.com"),
        scored(1, "web.page_viewed", T0, 60.0, crossing=T0 + 8 * D, crossed=(("mql", "up"),),
               path="/pricing")])
    clock.now = T0 + 90 * D
    await h.handle_scored_events([scored(2, SCORE_DUE_EVENT, T0 + 8 * D, 49.99, crossing=None,
                                         crossed=(("mql", "down"),), eid="score-due-b2b-1",
                                         model="b2b")])
    stages = [StageChanged.from_bytes(o.value) for o in store.outbox
              if o.topic == TOPICS.stages]
    assert [(s.from_stage, s.to_stage) for s in stages] == [(None, "lead"), ("lead", "mql"),
                                                            ("mql", "lead")]
    assert stages[-1].cause == "b2b score fell below mql as engagement faded"
    assert stages[-1].at == datetime.fromtimestamp(T0 + 8 * D, UTC)
    sends = [SendMessage.from_bytes(o.value) for o in store.outbox
             if o.topic == TOPICS.dispatch]
    assert [(s.program_id, s.step_id) for s in sends] == [("warm", "hello"),
                                                          ("cooling", "still-there")]
    assert store.enrollments[("lead-1", "cooling", T0 + 90 * D)]["status"] == "completed"


async def test_a_crossing_due_for_a_lead_erased_since_creates_nobody() -> None:
    store, clock = MemoryStore(), Clock()
    h = handlers(store, clock)
    await h.handle_scored_events([scored(0, SCORE_DUE_EVENT, T0, 40.0, crossing=None,
                                         crossed=(("mql", "down"),), model="b2b")])
    assert store.leads == {} and store.outbox == []


def test_a_kept_score_reads_as_of_a_later_time() -> None:
    kept = {"total": 60.0, "fit": 10.0, "engagement": 50.0, "above": ["mql"],
            "breakdown": [{"rule": "pricing-page", "points": 50.0, "kind": "engagement"},
                          {"rule": "senior", "points": 10.0, "kind": "fit"}],
            "as_of": T0, "model": "b2b", "version": 1, "half_life": 30 * D,
            "thresholds": {"mql": 50.0}, "next_crossing": {
                "threshold": "mql", "direction": "down", "at": T0 + 7.9 * D}}
    later = score_at(kept, T0 + 30 * D)
    assert (later["total"], later["engagement"], later["above"]) == (35.0, 25.0, [])
    assert later["breakdown"] == [{"rule": "pricing-page", "points": 25.0, "kind": "engagement"},
                                  {"rule": "senior", "points": 10.0, "kind": "fit"}]
    assert later["as_of"] == T0 + 30 * D and later["next_crossing"] == kept["next_crossing"]
    old = {"total": 60.0, "fit": 0.0, "engagement": 60.0, "above": ["mql"], "breakdown": []}
    assert score_at(old, T0 + 30 * D) == old  # saved before scores carried their half-life


async def test_a_crossing_is_never_dated_before_the_stage_it_ends_began() -> None:
    """The lead became mql late (its event decided ten days after its time); the crossing's
    own time is before that: the change is dated when the stage began, history in order."""
    store, clock = MemoryStore(), Clock()
    h = handlers(store, clock)
    clock.now = T0 + 10 * D
    await h.handle_scored_events([scored(0, "web.page_viewed", T0, 60.0, crossing=T0 + 8 * D,
                                         crossed=(("mql", "up"),), path="/pricing")])
    clock.now = T0 + 90 * D
    await h.handle_scored_events([scored(1, SCORE_DUE_EVENT, T0 + 8 * D, 49.99, crossing=None,
                                         crossed=(("mql", "down"),), eid="due", model="b2b")])
    stages = [StageChanged.from_bytes(o.value) for o in store.outbox
              if o.topic == TOPICS.stages]
    assert [(s.to_stage, s.at.timestamp()) for s in stages[1:]] == [
        ("mql", T0 + 10 * D), ("lead", T0 + 10 * D)]
