"""The window of recently published event identities (services/ingest/domain/recent.py) and a
Segment call sent twice (the real app, a FakePublisher)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import orjson

from services.common.clock import ControllableClock
from services.common.config.settings import KafkaSettings
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.domain.recent import RecentIds
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings


def test_ids_are_remembered_for_the_window_and_up_to_the_limit() -> None:
    recent = RecentIds(window=60, limit=2)
    recent.add([("s", "a"), ("s", "b")], now=0)
    assert recent.seen("s", "a", now=59) and not recent.seen("t", "a", now=59)
    assert not recent.seen("s", "a", now=60)  # the window is over
    recent.add([("s", "c"), ("s", "d"), ("s", "e")], now=100)
    assert [recent.seen("s", x, now=100) for x in "cde"] == [False, True, True]
    off = RecentIds(window=0)
    off.add([("s", "a")], now=0)
    assert not off.seen("s", "a", now=0)


async def test_a_segment_call_sent_again_is_accepted_and_published_once() -> None:
    publisher = FakePublisher()
    settings = IngestSettings(api_keys=[ApiKeyConfig(name="sdk", sha256=hash_key("nk_sdk"),
                                                     sources=["segment:*"])])
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=publisher,
                               clock=ControllableClock(datetime(2026, 11, 24, tzinfo=UTC))))
    call = {"type": "track", "event": "Report Exported", "userId": "lead-1", "messageId": "m-1"}
    batch = orjson.dumps({"batch": [call, call]})  # twice in one batch, then the whole again
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as client:
        answers = [await client.post("/v1/batch", content=batch, auth=("nk_sdk", ""),
                                     headers={"Content-Type": "application/json"})
                   for _ in range(2)]
        metrics = (await client.get("/metrics")).text
    assert [(a.status_code, a.json()["accepted"]) for a in answers] == [(200, 2), (200, 2)]
    assert [orjson.loads(r.value)["id"] for r in publisher.published] == ["m-1"]
    assert "nurture_ingest_events_repeated_total 3.0" in metrics


async def test_a_refused_call_sent_again_is_refused_again_not_taken_for_published() -> None:
    publisher = FakePublisher()
    settings = IngestSettings(api_keys=[ApiKeyConfig(
        name="site", sha256=hash_key("nk_site"), sources=["segment:*"], types=["web.*"])])
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=publisher,
                               clock=ControllableClock(datetime(2026, 11, 24, tzinfo=UTC))))
    call = {"type": "track", "event": "Report Exported", "userId": "lead-1", "messageId": "m-1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as client:
        answers = [await client.post("/v1/batch", content=orjson.dumps({"batch": [call]}),
                                     auth=("nk_site", ""),
                                     headers={"Content-Type": "application/json"})
                   for _ in range(2)]
    assert [(a.json()["accepted"], a.json()["rejected_calls"]) for a in answers] == [
        (0, 1), (0, 1)]  # product.activity: not for this key, both times
