"""What dispatch reads from the events topic besides suppressions: erasures and merges."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.bindings import record_headers
from schemas.cloudevent import merged_event, new_event
from services.dispatch.adapters.events import erased_leads, merged_leads


def record(event: dict[str, Any]) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(event)
    headers = [(n, v.encode()) for n, v in record_headers(event["type"])]
    return ConsumerRecord("events", 0, 0, 0, 0, event["subject"].encode(), value, None, 0,
                          len(value), headers)


def test_merges_and_erasures_are_read_and_other_events_skipped() -> None:
    records = [
        record(merged_event("lead-1", "anon-1", state={"s": []}, time=1.9e9)),
        record(new_event(id="e", source="s", type="lead.erased", subject="lead-2", data={})),
        record(new_event(id="v", source="s", type="web.page_viewed", subject="lead-3",
                         data={"url": "https://x.io/", "from": "lead-4"})),
    ]
    assert merged_leads(records) == [("lead-1", "anon-1")]
    assert erased_leads(records) == ["lead-2"]
