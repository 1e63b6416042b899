"""Broker down → 503 with Retry-After and nothing reported accepted; broker back → the resend is
accepted and lands. Uses its own broker (started and stopped here), not the session's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from deploy.local import stack
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics, ensure_topics
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings
from tests.support import read_topic, serve, wait_until

KEY = "nk_outage"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/cloudevents+json"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[stack.Kafka]:
    kafka = stack.Kafka(home=tmp_path / "kafka", port=stack.free_port(), libs=stack.kafka_libs(),
                        heap_mb=256)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def event(event_id: str) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": event_id, "source": "urn:outage-test",
                         "type": "web.page_viewed", "subject": "lead-9",
                         "data": {"url": "https://www.example.com/"}})


async def test_outage_gives_503_then_resend_lands(broker: stack.Kafka) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    await ensure_topics(kafka, partitions=1)
    settings = IngestSettings(
        api_keys=[ApiKeyConfig(name="t", sha256=hash_key(KEY))],
        produce_timeout_seconds=2, retry_after_seconds=3)
    topic = Topics().events
    app = create_app(bootstrap(settings, kafka))
    async with serve(app) as url, httpx.AsyncClient(timeout=30) as client:
        async def ready() -> bool:
            return (await client.get(f"{url}/readyz")).status_code == 200
        await wait_until(ready, timeout=30, what="ingest ready")
        assert (await client.post(f"{url}/v1/events", content=event("before"),
                                  headers=HEADERS)).status_code == 202

        broker.stop()
        down = await client.post(f"{url}/v1/events", content=event("during"), headers=HEADERS)
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "3"
        assert "not accepted" in down.json()["detail"]
        assert (await client.get(f"{url}/readyz")).status_code == 503

        broker.start()
        resend_id = f"resend-{uuid.uuid4().hex[:6]}"

        async def accepted() -> bool:
            r = await client.post(f"{url}/v1/events", content=event(resend_id), headers=HEADERS)
            assert r.status_code in (202, 503), r.text
            return r.status_code == 202
        await wait_until(accepted, timeout=60, what="ingest accepting again")

    records = await read_topic(broker.bootstrap, topic,
                               until=lambda rs: resend_id.encode() in b"".join(r.value for r in rs))
    ids = [orjson.loads(r.value)["id"] for r in records]
    assert ids[0] == "before" and resend_id in ids
