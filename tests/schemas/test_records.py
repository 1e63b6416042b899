"""The records on the internal topics: models, their committed JSON Schemas and examples, and the
records the services wrote before the models existed (rolling upgrade)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Resource

from schemas import validate_event
from schemas.cloudevent import new_event
from schemas.records import (
    RECORDS,
    DeadLetter,
    Origin,
    Record,
    RecordError,
    ScoredEvent,
    SendMessage,
    StageChanged,
)
from schemas.records.__main__ import main as check_schemas
from schemas.records.documents import committed, document, example, render
from schemas.registry import registry

FIXTURES = Path(__file__).parent / "fixtures" / "v1"
LEGACY = {  # written by the services before the models (captured from that code)
    "scored-event.json": ScoredEvent, "scored-event-erased.json": ScoredEvent,
    "dispatch-command-email.json": SendMessage, "dispatch-command-crm-task.json": SendMessage,
    "stage-changed.json": StageChanged, "dead-letter.json": DeadLetter,
}


def validator(model: type[Record]) -> Draft202012Validator:
    doc = document(model)
    reg = registry().with_resource(doc["$id"], Resource.from_contents(doc))
    return Draft202012Validator(doc, registry=reg)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_records_written_before_the_models_still_parse(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    record = LEGACY[name].from_bytes(raw)
    assert record.version == 1
    assert validator(LEGACY[name]).is_valid(json.loads(raw))
    again = LEGACY[name].from_bytes(record.to_bytes())
    assert again == record
    dumped = record.model_dump(mode="json")
    for key, value in json.loads(raw).items():  # every field keeps its value (times: the instant)
        assert same(dumped[key], value), key


def same(ours: Any, theirs: Any) -> bool:
    """Equal JSON, where a date-time written another way counts equal if it is the same instant."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() >= theirs.keys() and all(same(ours[k], v) for k, v in theirs.items())
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(same, ours, theirs))
    if isinstance(ours, str) and isinstance(theirs, str) and ours != theirs:
        try:
            return datetime.fromisoformat(ours) == datetime.fromisoformat(theirs)
        except ValueError:
            return False
    return bool(ours == theirs)


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
def test_the_committed_schema_files_are_the_models(model: type[Record]) -> None:
    assert committed(model) == render(model), "run: python -m schemas.records --write"


def test_the_schema_check_command_passes_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_schemas([]) == 0
    with pytest.raises(SystemExit):
        check_schemas(["--help"])
    assert "--write" in capsys.readouterr().out


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
def test_each_example_is_valid_for_the_model_and_its_schema_and_round_trips(
        model: type[Record]) -> None:
    doc = example(model)
    validator(model).validate(doc)
    record = model.model_validate(doc)
    assert model.from_bytes(record.to_bytes()) == record


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
def test_model_and_schema_both_refuse_a_record_without_a_required_field(
        model: type[Record]) -> None:
    doc = example(model)
    for field in document(model)["required"]:
        broken = {k: v for k, v in doc.items() if k != field}
        assert not validator(model).is_valid(broken), field
        with pytest.raises(RecordError, match=field):
            model.from_bytes(json.dumps(broken).encode())


def test_a_record_error_names_the_field_and_never_the_value() -> None:
    doc = example(SendMessage) | {"channel": "pigeon", "lead_id": "secret@example.com\x00"}
    with pytest.raises(RecordError) as caught:
        SendMessage.from_bytes(json.dumps(doc).encode())
    assert "channel" in str(caught.value) and "lead_id" in str(caught.value)
    assert "pigeon" not in str(caught.value) and "secret" not in str(caught.value)
    for raw in (b"", None, b"[1]", b"{not json"):
        with pytest.raises(RecordError):
            SendMessage.from_bytes(raw)


def test_a_record_error_says_not_json_and_gives_a_validator_message_as_it_is() -> None:
    """Dead letters of every consumer say "value is not JSON"; a validator's own message is
    kept without pydantic's "Value error, " before it."""
    with pytest.raises(RecordError, match=r"^value is not JSON: .*line 1 column 2$"):
        ScoredEvent.from_bytes(b"{not json")
    doc = example(ScoredEvent)
    del doc["event"]["subject"]
    with pytest.raises(RecordError) as caught:
        ScoredEvent.from_bytes(json.dumps(doc).encode())
    assert str(caught.value) == "not a ScoredEvent: event: missing or empty 'subject'"


@pytest.mark.parametrize("attr", ["id", "source", "type", "subject"])
def test_a_scored_event_needs_the_attributes_consumers_key_on(attr: str) -> None:
    doc = example(ScoredEvent)
    doc["event"] = {k: v for k, v in doc["event"].items() if k != attr}
    with pytest.raises(RecordError, match=attr):
        ScoredEvent.from_bytes(json.dumps(doc).encode())


def test_scored_event_accessors() -> None:
    record = ScoredEvent.model_validate(example(ScoredEvent))
    assert record.lead_id == "lead-42"
    assert record.dedupe_key == "https://www.example.com\x1fevt-1"
    assert record.event_epoch() == datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    no_time = ScoredEvent.model_validate(
        example(ScoredEvent) | {"event": {**record.event, "time": "yesterday"}})
    assert no_time.event_epoch() is None


def test_a_newer_producer_may_add_fields() -> None:
    doc = example(StageChanged) | {"reached": ["mql"]}
    assert StageChanged.from_bytes(json.dumps(doc).encode()).to_stage == "mql"


def test_a_dead_letter_keeps_the_original_bytes() -> None:
    value = b"\xff\x00not json"
    letter = DeadLetter.of(key=b"lead-1", value=value, origin=Origin("t", 1, 2), error="why",
                           consumer="c", failed_at=datetime(2026, 12, 1, tzinfo=UTC))
    again = DeadLetter.from_bytes(letter.to_bytes())
    assert again.value == value and again.key == b"lead-1"
    assert again.value_b64 == base64.b64encode(value).decode()
    assert again.origin == Origin("t", 1, 2)
    assert DeadLetter.of(key=None, value=None, origin=Origin("t", 0, 0), error="e",
                         consumer="c", failed_at=datetime(2026, 12, 1, tzinfo=UTC)).key is None


def test_new_event_builds_a_valid_cloudevent() -> None:
    event = new_event(id="e1", source="nurture-dispatch", type="message.sent", subject="lead-1",
                      data={"message_id": "m1", "channel": "email"},
                      time=datetime(2026, 12, 1, 9, 30, tzinfo=UTC), traceparent=None)
    assert event == {"specversion": "1.0", "id": "e1", "source": "nurture-dispatch",
                     "type": "message.sent", "subject": "lead-1",
                     "time": "2026-12-01T09:30:00.000Z", "datacontenttype": "application/json",
                     "data": {"message_id": "m1", "channel": "email"}}
    assert validate_event(event) == []
    epoch = new_event(id="e", source="s", type="sms.replied", subject="l", data={},
                      time=1764581400.0, datacontenttype=None, tenant="acme")
    assert epoch["time"] == "2025-12-01T09:30:00.000Z" and "datacontenttype" not in epoch
    assert epoch["tenant"] == "acme"
    assert new_event(id="e", source="s", type="t", subject="l", data={},
                     time="2026-01-01T00:00:00+01:00")["time"] == "2026-01-01T00:00:00+01:00"
    with pytest.raises(ValueError, match="aware"):
        new_event(id="e", source="s", type="t", subject="l", data={}, time=datetime(2026, 1, 1))


def _all(doc: Any) -> list[Any]:
    return [doc] + ([v for x in doc.values() for v in _all(x)] if isinstance(doc, dict) else [])


def test_the_scored_event_schema_points_at_the_event_envelope() -> None:
    refs = [d["$ref"] for d in _all(document(ScoredEvent)) if isinstance(d, dict) and "$ref" in d]
    assert "https://schemas.nurture.dev/events/v1/cloudevent.json" in refs
    broken = example(ScoredEvent)
    broken["event"]["specversion"] = "0.3"
    assert not validator(ScoredEvent).is_valid(broken)


def test_every_topic_carries_a_model() -> None:
    from services.common.kafka.topics import SPECS

    assert {m.TOPIC for m in RECORDS} | {"nurture.events.v1"} == {s.name for s in SPECS}


def test_encode_writes_what_the_model_writes() -> None:
    record = ScoredEvent.model_validate(example(ScoredEvent))
    score = record.score.model_dump(mode="json")
    assert score["as_of"] == "2026-11-20T10:00:00.000Z"  # the one event-time format
    assert ScoredEvent.encode(record.event, score) == record.to_bytes()
    assert ScoredEvent.from_bytes(ScoredEvent.encode(record.event, score)) == record
