"""Identity in the scorer (docs/identity.md): a link hands an id's state to a lead once, later
events of the id count for the lead, and erasing the lead erases the ids it absorbed. Records
go through `Processor` as the worker runs it; what it sends back to the events topic is fed in
again, as the topic would."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.vocabulary import ERASED_EVENT, LINKED_EVENT, MERGED_EVENT
from services.common.kafka.deadletter import Origin
from services.common.kafka.topics import Topics
from services.scoring.domain.engine import absorb, apply
from services.scoring.domain.model import EngagementRule, ScoringModel
from services.scoring.domain.state import LeadState
from services.scoring.service_layer.handlers import Processor

MODEL = ScoringModel(id="m", version=1, half_life_days=30, thresholds={"mql": 15},
                     engagement=(EngagementRule("pricing", frozenset({"web.page_viewed"}), 10),
                                 EngagementRule("dl", frozenset({"web.content_downloaded"}), 8)))
TOPICS = Topics("p.")
NOW = datetime(2026, 11, 24, tzinfo=UTC)
RECORD_MS = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)


def event(etype: str, subject: str, data: dict[str, Any], *, id: str,
          time: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {"specversion": "1.0", "id": id, "source": "test", "type": etype,
            "subject": subject, "time": time, "data": data}


def view(subject: str, id: str, time: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return event("web.page_viewed", subject, {"url": "https://x.test/pricing"}, id=id, time=time)


def link(subject: str, lead_id: str, id: str = "link-1") -> dict[str, Any]:
    return event(LINKED_EVENT, subject, {"lead_id": lead_id, "via": "identify"}, id=id)


@dataclass
class Worker:
    """The scorer with its table; the events topic fed back in, in order."""

    table: dict[bytes, bytes] = field(default_factory=dict)
    scored: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    processor: Processor = field(default_factory=lambda: Processor([MODEL], TOPICS))

    def send(self, *events: dict[str, Any]) -> None:
        queue = [(e["subject"].encode(), orjson.dumps(e), None) for e in events]
        while queue:
            key, value, headers = queue.pop(0)
            result = self.processor.process(
                key=key, value=value, origin=Origin("p.nurture.events.v1", 0, 0),
                timestamp_ms=RECORD_MS, state=self.table.get(key), now=NOW, headers=headers)
            self.outcomes.append(result.outcome)
            if result.state is not None:
                self.table[key] = result.state
            elif result.erase:
                self.table.pop(key, None)
            for out in result.out:
                if out.topic == TOPICS.events:
                    queue.append((out.key or b"", out.value, out.headers))
                elif out.topic == TOPICS.scored_events:
                    self.scored.append(orjson.loads(out.value))
                else:
                    self.dead.append(orjson.loads(out.value))

    def total(self, lead_id: str) -> float:
        last = [s for s in self.scored if s["score"]["lead_id"] == lead_id][-1]
        return float(last["score"]["models"]["m"]["total"])


def test_a_link_hands_the_anonymous_score_to_the_lead_and_can_cross_a_threshold() -> None:
    worker = Worker()
    worker.send(view("anon-1", "v1"), event("web.content_downloaded", "user-1",
                                            {"content_id": "c"}, id="d1"))
    worker.send(link("anon-1", "user-1"))
    merged = worker.scored[-1]
    assert merged["event"]["type"] == MERGED_EVENT
    assert merged["event"]["data"] == {"from": "anon-1", "via": "identify"}  # no state
    model = merged["score"]["models"]["m"]
    assert (model["total"], model["previous_total"]) == (18.0, 8.0)
    assert model["crossed"] == [{"threshold": "mql", "direction": "up", "score": 15}]
    assert {b["rule"] for b in model["breakdown"]} == {"pricing", "dl"}
    assert worker.outcomes == ["scored", "scored", "linked", "merged"]


def test_a_link_seen_twice_merges_once() -> None:
    worker = Worker()
    worker.send(view("anon-1", "v1"), link("anon-1", "user-1"))
    worker.send(link("anon-1", "user-1", id="link-1"))  # redelivered: handed over again
    assert worker.outcomes[-2:] == ["linked", "duplicate"]
    worker.send(link("anon-1", "user-1", id="link-2"))  # another link of the pair: nothing
    assert worker.outcomes[-1] == "duplicate" and len(worker.scored) == 3
    assert worker.total("user-1") == 10.0
    assert [s["score"]["duplicate"] for s in worker.scored if s["event"]["type"] ==
            MERGED_EVENT] == [False, True]


def test_events_of_a_linked_id_count_for_the_lead_once_even_when_redelivered() -> None:
    worker = Worker()
    worker.send(link("anon-1", "user-1"))  # before any event of either id
    worker.send(view("anon-1", "v1"), view("anon-1", "v1"))
    assert worker.outcomes == ["linked", "merged", "forwarded", "forwarded", "scored",
                               "duplicate"]
    assert {s["score"]["lead_id"] for s in worker.scored} == {"user-1"}
    assert worker.total("user-1") == 10.0


def test_awards_keep_their_event_time_so_an_old_anonymous_visit_has_decayed() -> None:
    worker = Worker()
    worker.send(view("anon-1", "v1", time="2026-10-21T10:00:00Z"))  # 30 days (one half-life)
    worker.send(event("web.content_downloaded", "user-1", {"content_id": "c"}, id="d1"))
    worker.send(link("anon-1", "user-1"))
    assert worker.total("user-1") == 13.0  # 8 + 10 / 2


def test_a_second_link_to_another_lead_or_to_itself_is_dead_lettered_with_the_reason() -> None:
    worker = Worker()
    worker.send(link("anon-1", "user-1"), link("anon-1", "user-2", id="l2"),
                link("anon-2", "anon-2", id="l3"))
    reasons = [d["error"] for d in worker.dead]
    assert reasons == ["data.lead_id: the subject is already linked to another lead",
                       "data.lead_id: is the event's subject (an id cannot be linked to itself)"]


def test_erasing_the_lead_erases_the_ids_it_absorbed() -> None:
    worker = Worker()
    worker.send(view("anon-1", "v1"), link("anon-1", "user-1"))
    assert set(worker.table) == {b"anon-1", b"user-1"}
    worker.send(event(ERASED_EVENT, "user-1", {}, id="erase-1"))
    assert worker.table == {}
    erased = [s["score"]["lead_id"] for s in worker.scored if s["event"]["type"] == ERASED_EVENT]
    assert erased == ["user-1", "anon-1"]
    worker.send(view("anon-1", "v2"))  # the device comes back: a new, anonymous visitor
    assert worker.scored[-1]["score"]["lead_id"] == "anon-1"


def test_absorb_is_the_sum_of_both_histories() -> None:
    anon, lead = LeadState(), LeadState()
    t = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    apply(anon, view("anon-1", "v1"), lead_id="anon-1", event_time=t, models=[MODEL])
    apply(anon, {**view("anon-1", "v1"), "type": "crm.lead_upserted",
                 "data": {"company": "Old"}}, lead_id="anon-1", event_time=t - 10, models=[MODEL])
    apply(lead, {**view("user-1", "u1"), "type": "crm.lead_upserted",
                 "data": {"company": "New"}}, lead_id="user-1", event_time=t, models=[MODEL])
    snapshot = absorb(lead, anon, lead_id="user-1", other_id="anon-1", models=[MODEL])
    assert snapshot.models[0].total == 10.0
    assert lead.profile["company"] == "New"  # the newer value wins, whoever had it
    assert lead.merged == {"anon-1": None}
    again = absorb(lead, anon, lead_id="user-1", other_id="anon-1", models=[MODEL])
    assert again.duplicate and again.models[0].total == 10.0


def test_links_each_way_at_once_dead_letter_the_cycle_instead_of_looping() -> None:
    worker = Worker()
    worker.send(view("x", "vx"), view("y", "vy"))
    worker.send(link("x", "y", id="l1"), link("y", "x", id="l2"))
    assert [d["error"] for d in worker.dead] == [
        "data.from: this lead is linked to that id, which is linked to it: the links make a "
        "cycle"] * 2
    worker.send(view("x", "v2"))  # linked both ways: passed round a few times, then stopped
    assert worker.dead[-1]["error"] == "forwarded through 8 linked ids: the links make a cycle"


def test_a_page_link_never_folds_a_known_lead_a_crm_merge_may() -> None:
    worker = Worker()
    worker.send(event("crm.lead_upserted", "crm-9", {"email": "v@x.io"}, id="p1"))
    worker.send(link("crm-9", "attacker"))  # via identify, as a page sends it
    assert worker.dead[-1]["error"].startswith("data.lead_id: the subject is a known lead")
    merge = event(LINKED_EVENT, "crm-9", {"lead_id": "crm-1", "via": "crm_merge"}, id="m1")
    worker.send(merge)
    assert worker.outcomes[-2:] == ["linked", "merged"]


def test_the_absorbed_ids_recent_events_stay_duplicates_on_a_busy_lead() -> None:
    worker = Worker()
    worker.send(view("anon-1", "old"))
    worker.send(*(event("web.content_downloaded", "user-1", {"content_id": "c"}, id=f"d{i}")
                  for i in range(70)))  # the lead's own window is full
    worker.send(link("anon-1", "user-1"))
    total = worker.total("user-1")
    worker.send(view("anon-1", "old"))  # a retry of the visitor's view, after the link
    assert worker.outcomes[-2:] == ["forwarded", "duplicate"]
    assert worker.total("user-1") == total
