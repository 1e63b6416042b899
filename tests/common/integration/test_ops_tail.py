"""`nurture-ops tail` against the real broker: records decoded through their contract, filtered
by lead, type and time, unreadable ones shown with the reason, and an end when not following."""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from schemas.cloudevent import new_event
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.operator.tail import tail
from tests.support import isolated_kafka, model_score, run_to_a_gone_reader, scored_record


def event(n: int, lead: str, kind: str) -> dict[str, Any]:
    return new_event(id=f"e-{n}", source="https://www.example.com", type=kind, subject=lead,
                     time=datetime(2026, 12, 1, tzinfo=UTC).timestamp(), data={})


async def publish(kafka: KafkaSettings, topic: str, *values: bytes,
                  timestamp_ms: int | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k", partition=0,
                                         timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


async def lines(kafka: KafkaSettings, topic: str, since: datetime | None = None,
                **options: Any) -> list[dict[str, Any]]:
    args = argparse.Namespace(**({"topic": topic, "lead": None, "type": None, "follow": False,
                                  "limit": 0, "json": True} | options))
    out: list[str] = []
    await tail(kafka, args, since, out.append)
    return [orjson.loads(line) for line in out]


async def test_tail_decodes_filters_and_shows_the_unreadable(kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap)
    topics = Topics(kafka.topic_prefix)
    await publish(kafka, topics.events, orjson.dumps(event(1, "lead-1", "web.page_viewed")),
                  orjson.dumps(event(2, "lead-2", "email.opened")),
                  orjson.dumps(event(3, "lead-1", "email.clicked")), b"{not json")

    everything = await lines(kafka, "events")
    assert [(x.get("lead"), x.get("type")) for x in everything] == [
        ("lead-1", "web.page_viewed"), ("lead-2", "email.opened"), ("lead-1", "email.clicked"),
        (None, None)]
    assert everything[0]["record"]["id"] == "e-1"
    assert everything[3]["unreadable"] and "record" not in everything[3]

    assert [x["record"]["id"] for x in await lines(kafka, "events", lead="lead-1")
            if "record" in x] == ["e-1", "e-3"]
    assert [x["record"]["id"] for x in await lines(kafka, "events", type="email.*")
            if "record" in x] == ["e-2", "e-3"]
    assert len(await lines(kafka, "events", limit=2)) == 2


async def test_tail_reads_scored_events_through_the_model_and_from_a_time(
        kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap)
    topics = Topics(kafka.topic_prefix)
    old = int((datetime.now(UTC) - timedelta(days=2)).timestamp() * 1000)
    await publish(kafka, topics.scored_events,
                  scored_record(event(1, "lead-9", "web.page_viewed"), model_score(5.0)),
                  timestamp_ms=old)
    await publish(kafka, topics.scored_events,
                  scored_record(event(2, "lead-9", "web.form_submitted"), model_score(30.0)))

    recent = await lines(kafka, "scored-events", since=datetime.now(UTC) - timedelta(hours=1))
    assert [(x["lead"], x["type"], x["record"]["event"]["id"]) for x in recent] == [
        ("lead-9", "web.form_submitted", "e-2")]
    assert recent[0]["record"]["score"]["models"]["b2b"]["total"] == 30.0
    assert len(await lines(kafka, "scored-events")) == 2


async def test_tail_to_a_reader_that_stopped_early_ends_quietly(kafka_bootstrap: str) -> None:
    """`nurture-ops tail events | head -1`: the reader has gone before the records come."""
    kafka = await isolated_kafka(kafka_bootstrap)
    await publish(kafka, Topics(kafka.topic_prefix).events,
                  *(orjson.dumps(event(n, "lead-1", "web.page_viewed")) for n in range(3)))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "NURTURE_TOPIC_PREFIX": kafka.topic_prefix}
    code, err = await asyncio.to_thread(
        run_to_a_gone_reader, "services.operator", "tail", "events", env=env)
    assert (code, "Traceback" in err) == (0, False), err
