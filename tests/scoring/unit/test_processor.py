"""A record in → table value and output records out; malformed records become dead letters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.records import DeadLetter, ScoredEvent
from schemas.vocabulary import ERASED_EVENT, SCORE_DUE_EVENT
from services.common.kafka.deadletter import Origin
from services.common.kafka.topics import Topics
from services.scoring.adapters.model_files import load_models
from services.scoring.domain.model import EngagementRule, ScoringModel
from services.scoring.domain.state import LeadState
from services.scoring.service_layer.handlers import Processor, Result

MODEL = ScoringModel(id="m", version=1, half_life_days=30, thresholds={"mql": 10},
                     engagement=(EngagementRule("dl", frozenset({"web.content_downloaded"}), 10),))
TOPICS = Topics("p.")
NOW = datetime(2026, 11, 24, tzinfo=UTC)
ORIGIN = Origin("p.nurture.events.v1", 2, 41)
RECORD_MS = int(datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC).timestamp() * 1000)


def process(value: bytes | None, key: bytes | None = b"lead-1",
            state: bytes | LeadState | None = None) -> Result:
    return Processor([MODEL], TOPICS).process(key=key, value=value, origin=ORIGIN,
                                              timestamp_ms=RECORD_MS, state=state, now=NOW)


EVENT = {"specversion": "1.0", "id": "e1", "source": "s", "type": "web.content_downloaded",
         "subject": "lead-1", "time": "2026-11-20T10:00:00Z", "data": {"content_id": "c"}}


def test_scored_event_carries_the_event_and_the_snapshot() -> None:
    result = process(orjson.dumps(EVENT))
    assert result.outcome == "scored"
    (out,) = result.out
    assert (out.topic, out.key) == ("p.nurture.scored-events.v1", b"lead-1")
    body = orjson.loads(out.value)
    assert body["event"] == EVENT
    score = body["score"]
    assert score["lead_id"] == "lead-1"
    assert score["as_of"] == "2026-11-20T10:00:00.000Z"
    model = score["models"]["m"]
    assert (model["total"], model["previous_total"], model["above"]) == (10.0, None, ["mql"])
    assert model["crossed"] == [{"threshold": "mql", "direction": "up", "score": 10}]
    assert model["breakdown"] == [{"rule": "dl", "points": 10.0, "kind": "engagement"}]
    assert result.state is not None


def test_the_last_results_lead_object_scores_as_its_bytes_do() -> None:
    first = process(orjson.dumps(EVENT))
    assert first.state is not None and first.lead is not None
    assert first.lead.to_bytes() == first.state
    later = orjson.dumps({**EVENT, "id": "e2", "time": "2026-11-21T10:00:00Z"})
    from_bytes = process(later, state=first.state)
    from_object = process(later, state=first.lead)
    assert (from_object.state, from_object.out) == (from_bytes.state, from_bytes.out)
    assert from_object.lead is first.lead  # changed in place


def test_redelivery_is_a_duplicate_that_leaves_the_table_alone() -> None:
    first = process(orjson.dumps(EVENT))
    again = process(orjson.dumps(EVENT), state=first.state)
    assert again.outcome == "duplicate"
    assert again.state is None
    assert orjson.loads(again.out[0].value)["score"]["duplicate"] is True


def test_missing_time_falls_back_to_the_record_timestamp() -> None:
    event = {k: v for k, v in EVENT.items() if k != "time"}
    body = orjson.loads(process(orjson.dumps(event)).out[0].value)
    assert body["score"]["as_of"] == "2026-11-20T10:00:05.000Z"


def test_a_time_far_in_the_future_is_capped_at_the_record_time() -> None:
    body = orjson.loads(process(orjson.dumps({**EVENT, "time": "2099-01-01T00:00:00Z"}))
                        .out[0].value)
    assert body["score"]["as_of"] == "2026-11-20T10:00:05.000Z"


@pytest.mark.parametrize(("value", "key", "reason"), [
    (b"not json", b"lead-1", "not JSON"),
    (b"[1]", b"lead-1", "not a JSON object"),
    (None, b"lead-1", "empty record value"),
    (orjson.dumps({**EVENT, "subject": ""}), b"lead-1", "'subject'"),
    (orjson.dumps({**EVENT, "data": [1]}), b"lead-1", "'data' is not an object"),
    (orjson.dumps({**EVENT, "time": "yesterday"}), b"lead-1", "RFC 3339"),
    (orjson.dumps({**EVENT, "time": "2026-11-20T10:00:00"}), b"lead-1", "with a timezone"),
    (orjson.dumps({**EVENT, "time": "0001-01-01T00:30:00+01:00"}), b"lead-1", "2000-2099"),
    (orjson.dumps({**EVENT, "time": 17}), b"lead-1", "not a string"),
    (orjson.dumps({**EVENT, "type": "web.teleported"}), b"lead-1",
     "unknown event type 'web.teleported'"),
    (orjson.dumps({**EVENT, "data": {"content_id": 7}}), b"lead-1", "data.content_id:"),
    (orjson.dumps({**EVENT, "type": "web.page_viewed", "data": {}}), b"lead-1", "data.url:"),
    (orjson.dumps(EVENT), b"someone-else", "key is not the event's subject"),
    (orjson.dumps(EVENT), None, "key is not the event's subject"),
])
def test_malformed_records_are_dead_lettered_with_bytes_reason_and_origin(
        value: bytes | None, key: bytes | None, reason: str) -> None:
    result = process(value, key=key)
    assert result.outcome == "dead_lettered"
    assert result.state is None
    (out,) = result.out
    assert out.topic == "p.nurture.deadletter.v1"
    letter = orjson.loads(out.value)
    assert reason in letter["error"]
    assert letter["origin"] == {"topic": "p.nurture.events.v1", "partition": 2, "offset": 41}
    assert letter["consumer"] == "nurture-scoring"
    original = base64.b64decode(letter["value_b64"]) if letter["value_b64"] else None
    assert original == value


def test_an_unexpected_failure_on_one_record_is_dead_lettered_not_raised() -> None:
    class Exploding(ScoringModel):
        @property
        def half_life_seconds(self) -> float:
            raise ZeroDivisionError("boom")

    broken = Exploding(id="x", version=1, half_life_days=30, thresholds={"t": 1},
                       engagement=MODEL.engagement)
    result = Processor([broken], TOPICS).process(
        key=b"lead-1", value=orjson.dumps(EVENT), origin=ORIGIN, timestamp_ms=RECORD_MS,
        state=None, now=NOW)
    assert result.outcome == "dead_lettered"
    assert orjson.loads(result.out[0].value)["error"] == "ZeroDivisionError: boom"


def test_the_scored_record_is_a_scored_event_of_the_contract() -> None:
    (out,) = process(orjson.dumps(EVENT)).out
    record = ScoredEvent.from_bytes(out.value)
    assert (record.version, record.event, record.lead_id) == (1, EVENT, "lead-1")
    assert record.score.as_of == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    model = record.score.models["m"]
    assert (model.total, model.above, model.crossed[0].direction) == (10.0, ("mql",), "up")


def test_the_erasure_is_passed_on_as_a_scored_event_without_scores() -> None:
    erased = {**EVENT, "id": "x1", "type": ERASED_EVENT, "data": {}}
    result = process(orjson.dumps(erased), state=process(orjson.dumps(EVENT)).state)
    assert (result.outcome, result.erase, result.state) == ("erased", True, None)
    (out,) = result.out
    record = ScoredEvent.from_bytes(out.value)
    assert (record.event_type, record.score.models) == (ERASED_EVENT, {})


def readme_first_event() -> dict[str, Any]:
    """The event of the README's "Send a first event" (the `-d '...'` of its curl)."""
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = text[text.index("### Send a first event"):]
    body = section[section.index("-d '") + 4:]
    event: dict[str, Any] = orjson.loads(body[:body.index("'")])
    return event


def test_the_readme_first_event_scores_the_pricing_page_rule() -> None:
    """It carries only a url; the path the rule matches on is derived from it."""
    event = readme_first_event()
    assert "path" not in event["data"]
    models = load_models([Path(__file__).resolve().parents[3] / "config" / "scoring"])
    result = Processor(models, TOPICS).process(
        key=event["subject"].encode(), value=orjson.dumps(event), origin=ORIGIN,
        timestamp_ms=RECORD_MS, state=None, now=NOW)
    assert result.outcome == "scored"
    body = orjson.loads(result.out[0].value)
    assert body["event"]["data"]["path"] == "/pricing"
    rules = {part["rule"] for part in body["score"]["models"]["b2b"]["breakdown"]}
    assert "pricing-page" in rules


def test_a_scored_event_says_when_decay_alone_crosses_next() -> None:
    two = orjson.dumps({**EVENT, "data": {"content_id": "c"}, "id": "e2"})
    first = process(orjson.dumps(EVENT))
    second = process(two, state=first.state)
    model = orjson.loads(second.out[0].value)["score"]["models"]["m"]
    # 20 points fall to the mql threshold of 10 in one half-life (30 days)
    assert model["next_crossing"] == {"threshold": "mql", "direction": "down",
                                      "at": "2026-12-20T10:00:01.000Z"}
    assert (model["half_life"], model["thresholds"]) == (30 * 86400.0, {"mql": 10})


def test_a_score_due_event_scores_the_lead_as_of_its_time_and_brings_the_crossing() -> None:
    first = process(orjson.dumps({**EVENT, "id": "e1"}))
    second = process(orjson.dumps({**EVENT, "id": "e2"}), state=first.state)
    due = {"specversion": "1.0", "id": "score-due-m-1", "source": "nurture-orchestrator/decay",
           "type": SCORE_DUE_EVENT, "subject": "lead-1", "time": "2026-12-20T10:00:01Z",
           "data": {"model": "m"}}  # a month past the record's time: not capped there
    result = process(orjson.dumps(due), state=second.state)
    assert result.outcome == "scored"
    model = ScoredEvent.from_bytes(result.out[0].value).score.models["m"]
    # the first second below 10 (reported to the cent: 10.0)
    assert model.crossed[0].direction == "down" and model.total <= 10.0
    assert model.above == () and model.next_crossing is None
    assert result.state is not None


BINARY = [("ce_specversion", b"1.0"), ("ce_id", b"e1"), ("ce_source", b"s"),
          ("ce_type", b"web.content_downloaded"), ("ce_subject", b"lead-1"),
          ("ce_time", b"2026-11-20T10:00:00Z"), ("content-type", b"application/json")]


def test_a_binary_mode_record_scores_as_the_structured_event_would() -> None:
    result = Processor([MODEL], TOPICS).process(
        key=b"lead-1", value=orjson.dumps(EVENT["data"]), origin=ORIGIN, timestamp_ms=RECORD_MS,
        state=None, now=NOW, headers=BINARY)
    assert result.outcome == "scored"
    structured = process(orjson.dumps(EVENT))
    scored, expected = ScoredEvent.from_bytes(result.out[0].value), \
        ScoredEvent.from_bytes(structured.out[0].value)
    assert scored.score == expected.score
    assert {k: scored.event[k] for k in EVENT} == EVENT  # and its datacontenttype
    assert dict(result.out[0].headers)["nurture-event-type"] == b"web.content_downloaded"


def test_a_binary_mode_record_that_fails_is_dead_lettered_with_its_headers() -> None:
    headers = [*BINARY[:-1], ("content-type", b"text/plain")]
    result = Processor([MODEL], TOPICS).process(
        key=b"lead-1", value=b"plain words", origin=ORIGIN, timestamp_ms=RECORD_MS,
        state=None, now=NOW, headers=headers)
    assert result.outcome == "dead_lettered"
    letter = DeadLetter.from_bytes(result.out[0].value)
    assert "must be application/json, not 'text/plain'" in letter.error
    assert (letter.value, letter.original_headers) == (b"plain words", headers)
