"""Baseline for the scorer: the textbook faust agent, one event at a time,
`async for e in stream: table[k] = f(...)`, with a naive score (points per event type, a
per-lead dict in a JSON-serialized table). Run as a child process by bench/scoring.py:

    python -m bench.naive_agent     # env: KAFKA_BOOTSTRAP_SERVERS, NURTURE_TOPIC_PREFIX,
                                    #      BENCH_STATE_DIR, BENCH_PARTITIONS

Progress is read from the table's changelog topic, like the real worker's from its output."""

from __future__ import annotations

import os
from typing import Any

import faust
import orjson

from services.common.kafka.topics import Topics

POINTS = {"web.page_viewed": 2.0, "web.form_submitted": 10.0, "web.content_downloaded": 5.0,
          "crm.lead_upserted": 0.0}


def naive_score(lead: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    lead = dict(lead or {"total": 0.0, "events": 0, "profile": {}})
    lead["total"] += POINTS.get(event["type"], 1.0)
    lead["events"] += 1
    if event["type"] == "crm.lead_upserted":
        lead["profile"] = {**lead["profile"], **event.get("data", {})}
    lead["last_time"] = event.get("time")
    return lead


def create_app() -> faust.App:
    prefix = os.environ["NURTURE_TOPIC_PREFIX"]
    partitions = int(os.environ.get("BENCH_PARTITIONS", "2"))
    app = faust.App(
        f"{prefix}naive-agent", broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
        store="memory://", datadir=os.environ["BENCH_STATE_DIR"], topic_partitions=partitions,
        topic_allow_declare=True, consumer_auto_offset_reset="earliest", web_enabled=False,
        producer_acks=-1)
    source = app.topic(Topics(prefix).events, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")
    table = app.Table("naive-scores", partitions=partitions, default=None)
    holder: Any = table
    holder.key_serializer = "raw"  # lead ids as they are; values keep faust's JSON codec

    @app.agent(source)
    async def score(stream: Any) -> None:
        async for key, value in stream.items():
            event = orjson.loads(value)
            table[key] = naive_score(table.get(key), event)

    return app


if __name__ == "__main__":
    create_app().main()
