from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.ingest.domain.auth import ApiKey
from services.ingest.domain.intake import Rejected, accept, events_from_body

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]
KEY = ApiKey("web", "0" * 64, ("https://www.example.com*",))


def event(**overrides: Any) -> dict[str, Any]:
    base = {"specversion": "1.0", "id": "e-1", "source": "https://www.example.com",
            "type": "web.page_viewed", "subject": "lead-1",
            "data": {"url": "https://www.example.com/pricing"}}
    return base | overrides


def body(doc: Any) -> bytes:
    return orjson.dumps(doc)


@pytest.mark.parametrize(("ctype", "doc", "count"), [
    ("application/cloudevents+json", event(), 1),
    ("application/cloudevents+json; charset=utf-8", event(), 1),
    ("application/json", event(), 1),
    ("application/json", [event(), event(id="e-2")], 2),
    ("application/cloudevents-batch+json", [event(), event(id="e-2")], 2),
])
def test_content_types_single_and_batch(ctype: str, doc: Any, count: int) -> None:
    assert len(events_from_body(body(doc), ctype, max_events=500)) == count


@pytest.mark.parametrize(("ctype", "raw", "status", "message"), [
    ("text/plain", body(event()), 415, "unsupported content type 'text/plain'"),
    (None, body(event()), 415, "(none)"),
    ("application/json", b"{not json", 400, "not valid JSON"),
    # NaN and Infinity are not JSON (Python's json module would take them): no event carries
    # one past this point, so the validators never have to judge them
    ("application/json", b'{"data": {"amount": NaN}}', 400, "not valid JSON"),
    ("application/json", b'{"data": {"amount": -Infinity}}', 400, "not valid JSON"),
    ("application/json", b"", 400, "empty request body"),
    ("application/json", b"42", 400, "JSON object"),
    ("application/cloudevents+json", body([event()]), 400, "carries one event"),
    ("application/cloudevents-batch+json", body(event()), 400, "JSON array"),
    ("application/json", body([]), 400, "batch is empty"),
    ("application/json", body([event()] * 3), 413, "3 > 2"),
])
def test_body_refusals(ctype: str | None, raw: bytes, status: int, message: str) -> None:
    with pytest.raises(Rejected) as info:
        events_from_body(raw, ctype, max_events=2)
    assert info.value.status == status
    assert message in info.value.message


def test_batch_with_one_invalid_event_is_rejected_whole_with_index_and_path() -> None:
    bad = event(id="e-2", data={"title": "no url"})
    with pytest.raises(Rejected) as info:
        accept([event(), bad, event(id="e-3", type="web.nope")], key=KEY, received_at=NOW)
    assert info.value.status == 422
    found = {(p.index, p.path) for p in info.value.problems}
    assert (1, "data.url") in found
    assert (2, "type") in found
    assert all(p.index != 0 for p in info.value.problems)


def test_source_not_allowed_for_key_is_403_naming_it() -> None:
    with pytest.raises(Rejected) as info:
        accept([event(source="https://elsewhere.org")], key=KEY, received_at=NOW)
    assert info.value.status == 403
    assert "https://elsewhere.org" in info.value.message and "'web'" in info.value.message


def test_records_are_keyed_by_lead_and_time_defaults_to_receipt() -> None:
    (rec,) = accept([event()], key=KEY, received_at=NOW)
    assert rec.key == b"lead-1"
    value = orjson.loads(rec.value)
    assert value["time"] == "2026-11-24T09:30:00.000Z"
    # the path is derived from the url (schemas/normalize.py)
    assert value["data"] == {"url": "https://www.example.com/pricing", "path": "/pricing"}
    # structured mode as the Kafka binding has it: no ce_* header (schemas/bindings.py)
    assert rec.headers == [("content-type", b"application/cloudevents+json; charset=utf-8"),
                           ("nurture-event-type", b"web.page_viewed")]


def test_a_binary_mode_request_is_one_event_from_its_headers_and_body() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "https://www.example.com",
               "ce-type": "web.page_viewed", "ce-subject": "lead%20%C3%B6",
               "content-type": "application/json"}
    body = orjson.dumps({"url": "https://www.example.com/pricing"})
    (raw,) = events_from_body(body, headers["content-type"], max_events=1, headers=headers)
    assert raw == {"specversion": "1.0", "id": "b-1", "source": "https://www.example.com",
                   "type": "web.page_viewed", "subject": "lead ö",
                   "datacontenttype": "application/json",
                   "data": {"url": "https://www.example.com/pricing"}}
    (rec,) = accept([raw], key=KEY, received_at=NOW)
    assert orjson.loads(rec.value)["data"]["path"] == "/pricing"


@pytest.mark.parametrize(("content_type", "body", "status", "says"), [
    ("text/plain", b"hi", 415, "must be application/json, not 'text/plain'"),
    ("application/json", b"{nope", 400, "data is not valid JSON"),
])
def test_binary_mode_data_that_is_not_json_is_refused(
        content_type: str, body: bytes, status: int, says: str) -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "s",
               "ce-type": "web.page_viewed", "content-type": content_type}
    with pytest.raises(Rejected) as info:
        events_from_body(body, content_type, max_events=1, headers=headers)
    assert info.value.status == status and says in info.value.message


def test_event_time_sent_by_client_is_kept() -> None:
    (rec,) = accept([event(time="2026-10-01T08:00:00+02:00")], key=KEY, received_at=NOW)
    assert orjson.loads(rec.value)["time"] == "2026-10-01T08:00:00+02:00"


@pytest.mark.parametrize(("when", "message"), [
    ("2026-11-24T09:40:00Z", "is in the future (check the clock)"),
    ("1999-12-31T23:59:59Z", "is outside 2000-2099"),
])
def test_unusable_times_are_422_naming_the_field(when: str, message: str) -> None:
    with pytest.raises(Rejected) as info:
        accept([event(time=when)], key=KEY, received_at=NOW)
    assert info.value.status == 422
    assert [(p.index, p.path, p.message) for p in info.value.problems] == [(0, "time", message)]


def test_a_little_clock_skew_is_fine() -> None:
    assert accept([event(time="2026-11-24T09:34:00Z")], key=KEY, received_at=NOW)


def test_an_oversized_event_is_413() -> None:
    big = event(data={"url": "https://www.example.com/", "notes": "x" * 2000})
    with pytest.raises(Rejected) as info:
        accept([event(), big], key=KEY, received_at=NOW, max_event_bytes=1024)
    assert info.value.status == 413
    assert info.value.message.startswith("event 1 is ")


def test_a_key_limited_to_web_events_cannot_send_crm_events() -> None:
    browser = ApiKey("browser", "0" * 64, ("*",), ("web.*",))
    assert accept([event()], key=browser, received_at=NOW)
    with pytest.raises(Rejected) as info:
        accept([event(type="crm.lead_upserted", data={"email": "a@b.io"})], key=browser,
               received_at=NOW)
    assert info.value.status == 403
    assert "'crm.lead_upserted'" in info.value.message


@pytest.mark.parametrize("etype", ["message.sent", "message.failed", "message.suppressed"])
def test_types_only_nurture_publishes_are_refused_from_any_key(etype: str) -> None:
    # the dev key of `make run` may send every type ("*") and every source
    anything = ApiKey("dev", "0" * 64, ("*",), ("*",))
    example = orjson.loads((ROOT / "schemas" / "data" / f"{etype}.schema.json").read_bytes())
    forged = event(type=etype, source="nurture-dispatch", data=example["examples"][0])
    assert not anything.allows_type(etype)
    with pytest.raises(Rejected) as info:
        accept([forged], key=anything, received_at=NOW)
    assert info.value.status == 403
    assert info.value.message.startswith(f"events of type '{etype}' are published by Nurture")


def test_a_url_only_page_view_is_published_with_its_path_search_and_utm() -> None:
    url = "https://www.example.com/pricing?utm_source=newsletter"
    (record,) = accept([event(data={"url": url})], key=KEY, received_at=NOW)
    assert orjson.loads(record.value)["data"] == {
        "url": url, "path": "/pricing", "search": "?utm_source=newsletter",
        "utm": {"source": "newsletter"}}
