"""The CloudEvents bindings (schemas/bindings.py) against the official Python SDK: what Nurture
writes, the SDK reads as the event it is; what the SDK writes in either mode, Nurture reads as
the same event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.v1.event import CloudEvent

from schemas.bindings import (
    TYPE_HEADER,
    BindingError,
    DataNotJson,
    event_of_record,
    event_of_request,
    is_binary_record,
    is_binary_request,
    record_headers,
    record_type,
)
from schemas.cloudevent import new_event
from schemas.records import DeadLetter
from schemas.records.deadletter import Origin

EVENT = new_event(id="e-1", source="urn:test", type="web.page_viewed", subject="lead-ö 1",
                  time="2026-11-20T10:00:00Z", data={"url": "https://x.io/pricing"})


def sdk_event() -> CloudEvent:
    attributes = {k: v for k, v in EVENT.items() if k not in ("data", "time")}
    return CloudEvent({**attributes, "time": datetime(2026, 11, 20, 10, tzinfo=UTC)},
                      dict(EVENT["data"]))


def as_bytes(headers: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    return [(name, text.encode()) for name, text in headers]


def attributes_of(event: Any) -> dict[str, Any]:
    return {"id": event.get_id(), "source": event.get_source(), "type": event.get_type(),
            "subject": event.get_subject()}


def test_what_we_write_the_sdk_reads_as_a_structured_event() -> None:
    headers = as_bytes(record_headers(EVENT["type"]))
    assert not any(name.startswith("ce_") for name, _ in headers)
    message = sdk_kafka.KafkaMessage(headers=dict(headers), key=b"lead-1",
                                     value=orjson.dumps(EVENT))
    read = sdk_kafka.from_kafka_event(message)
    assert attributes_of(read) == {k: EVENT[k] for k in ("id", "source", "type", "subject")}
    assert read.get_data() == EVENT["data"]
    assert record_type(headers) == "web.page_viewed"


def test_a_binary_record_from_the_sdk_reads_as_the_structured_event() -> None:
    message = sdk_kafka.to_binary_event(sdk_event())
    headers = list(message.headers.items())
    assert is_binary_record(headers)
    event = event_of_record(headers, message.value)
    assert {k: event[k] for k in ("id", "source", "type", "subject", "specversion", "data")} == {
        k: EVENT[k] for k in ("id", "source", "type", "subject", "specversion", "data")}
    assert event["time"].startswith("2026-11-20T10:00:00")
    assert record_type(headers) == "web.page_viewed"


def test_a_structured_record_from_the_sdk_reads_as_is() -> None:
    message = sdk_kafka.to_structured_event(sdk_event())
    headers = list(message.headers.items())
    assert not is_binary_record(headers)
    assert event_of_record(headers, message.value)["data"] == EVENT["data"]


def test_records_written_before_the_type_header_still_read_as_structured() -> None:
    older = [("content-type", b"application/cloudevents+json; charset=utf-8"),
             ("ce_type", b"web.page_viewed")]
    assert not is_binary_record(older)
    assert event_of_record(older, orjson.dumps(EVENT)) == EVENT
    assert record_type(older) == "web.page_viewed"
    assert record_type([]) is None
    assert record_type([(TYPE_HEADER, b"x.y"), ("ce_type", b"a.b")]) == "x.y"


@pytest.mark.parametrize(("content_type", "data", "error", "kind"), [
    (b"text/plain", b"hello", "must be application/json, not 'text/plain'", DataNotJson),
    (b"application/json", b"{broken", "data is not valid JSON", BindingError),
])
def test_binary_data_that_is_not_json_is_refused_with_the_reason(
        content_type: bytes, data: bytes, error: str, kind: type[Exception]) -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"),
               ("ce_type", b"web.page_viewed"), ("content-type", content_type)]
    with pytest.raises(kind, match=error):
        event_of_record(headers, data)


def test_a_binary_record_without_data_has_none() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"s"),
               ("ce_type", b"lead.erased"), ("ce_subject", b"lead-1")]
    assert event_of_record(headers, None) == {
        "specversion": "1.0", "id": "1", "source": "s", "type": "lead.erased",
        "subject": "lead-1"}


def test_a_binary_http_request_from_the_sdk_reads_as_the_event() -> None:
    message = sdk_http.to_binary_event(sdk_event())
    assert message.headers["ce-subject"] != EVENT["subject"]  # percent-encoded on the wire
    event = event_of_request(message.headers, message.body)
    assert {k: event[k] for k in ("id", "source", "type", "subject", "data")} == {
        k: EVENT[k] for k in ("id", "source", "type", "subject", "data")}
    assert event["datacontenttype"] == "application/json"


def test_null_header_values_are_read_as_empty_and_kept_in_a_dead_letter() -> None:
    headers: list[tuple[str, bytes | None]] = [("content-type", None), ("trace", None),
                                               (TYPE_HEADER, b"web.page_viewed")]
    assert not is_binary_record(headers)
    assert record_type(headers) == "web.page_viewed"
    assert event_of_record(headers, orjson.dumps(EVENT)) == EVENT
    letter = DeadLetter.of(key=b"k", value=b"v", origin=Origin("t", 0, 1), error="e",
                           consumer="c", failed_at=datetime(2026, 1, 1, tzinfo=UTC),
                           headers=headers)
    assert letter.original_headers == [("content-type", b""), ("trace", b""),
                                       (TYPE_HEADER, b"web.page_viewed")]


def test_a_structured_request_with_a_stray_ce_header_is_structured() -> None:
    assert not is_binary_request({"Content-Type": "application/cloudevents+json",
                                  "ce-specversion": "1.0"})
    assert is_binary_request({"Content-Type": "application/json", "CE-SpecVersion": "1.0"})
