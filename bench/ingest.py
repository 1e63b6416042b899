"""1. Ingest: single-event and 100-event batch POSTs against the real ingest app (a child
process, producing to Kafka with acks=all), against (a) a bare FastAPI endpoint that validates
the same way and answers 202 without producing and (b) a raw aiokafka producer loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from bench.core import Sizes, Stopwatch, compare, cpu_seconds, events, latency_ms, rate
from bench.infra import Infra, child, free_port, http_ready
from bench.servers import KEY
from services.common.kafka.clients import make_producer
from services.common.kafka.topics import Topics

CONCURRENCY = 16
BATCH = 100


async def load(url: str, bodies: list[bytes], content_type: str, per_request: int
               ) -> dict[str, Any]:
    """POST every body with CONCURRENCY clients; events/s, requests/s and latency."""
    latencies: list[float] = []
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}
    failures = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        async def worker() -> None:
            nonlocal failures
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                r = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                failures += r.status_code != 202
        clock = Stopwatch()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = clock()
    if failures:
        raise RuntimeError(f"{failures} of {len(bodies)} requests to {url} were not accepted")
    return {"events_per_s": rate(len(bodies) * per_request, elapsed),
            "requests_per_s": rate(len(bodies), elapsed), **latency_ms(latencies)}


async def raw_producer(infra: Infra, topic: str, batches: list[list[dict[str, Any]]]
                       ) -> dict[str, Any]:
    """Baseline (b): the same events straight from an aiokafka producer (the services'
    producer settings), CONCURRENCY batches in flight, each awaited like a request."""
    kafka = await infra.kafka(partitions=1)
    producer = make_producer(kafka, client_id="bench-raw")
    await producer.start()
    latencies: list[float] = []
    queue = list(reversed(batches))
    try:
        async def worker() -> None:
            while queue:
                batch = queue.pop()
                started = time.perf_counter()
                futures = [await producer.send(topic, orjson.dumps(e),
                                               key=e["subject"].encode()) for e in batch]
                await asyncio.gather(*futures)
                latencies.append(time.perf_counter() - started)
        clock = Stopwatch()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = clock()
    finally:
        await producer.stop()
    return {"events_per_s": rate(sum(map(len, batches)), elapsed),
            "requests_per_s": rate(len(batches), elapsed), **latency_ms(latencies)}


async def run(infra: Infra, sizes: Sizes) -> dict[str, Any]:
    kafka = await infra.kafka()
    n = sizes.ingest_requests
    singles = [orjson.dumps(e) for e in events(n, max(1, n // 4), seed=1)]
    batch_events = events(max(1, n // 5) * BATCH, 1000, seed=2)
    batches = [batch_events[i:i + BATCH] for i in range(0, len(batch_events), BATCH)]
    batch_bodies = [orjson.dumps(b) for b in batches]
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "NURTURE_TOPIC_PREFIX": kafka.topic_prefix, "NURTURE_LOG_LEVEL": "WARNING"}
    measured: dict[str, dict[str, Any]] = {}
    for kind in ("bare", "ingest"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with child(["-m", "bench.servers", kind, str(port)], env,
                         infra.workdir / f"{kind}.log", http_ready(f"{base}/readyz")) as proc:
            url = f"{base}/v1/events"
            await load(url, singles[:20], "application/cloudevents+json", 1)  # warm-up
            for shape, bodies, content_type, per in (
                    ("single", singles, "application/cloudevents+json", 1),
                    ("batch", batch_bodies, "application/cloudevents-batch+json", BATCH)):
                cpu = cpu_seconds(proc.pid)
                result = await load(url, bodies, content_type, per)
                used = cpu_seconds(proc.pid) - cpu  # the server's CPU per event
                measured[f"{kind}_{shape}"] = {
                    **result, "cpu_us_per_event": round(used * 1e6 / (len(bodies) * per), 1)}
    measured["raw_batch"] = await raw_producer(infra, Topics(kafka.topic_prefix).events,
                                               batches)
    return {
        "measured": measured,
        "comparisons": [
            compare("ingest single-event POST", measured["ingest_single"]["events_per_s"],
                    measured["bare_single"]["events_per_s"], target=0.75, unit="events/s",
                    baseline_name="bare FastAPI endpoint (validates, 202, no Kafka)",
                    extra={"latency": {k: measured["ingest_single"][k]
                                       for k in ("p50_ms", "p99_ms")},
                           "cpu_us_per_event": measured["ingest_single"]["cpu_us_per_event"]}),
            compare("ingest 100-event batch POST", measured["ingest_batch"]["events_per_s"],
                    measured["raw_batch"]["events_per_s"], target=0.35, unit="events/s",
                    baseline_name="raw aiokafka producer loop (100 sends, awaited)",
                    extra={"latency": {k: measured["ingest_batch"][k]
                                       for k in ("p50_ms", "p99_ms")},
                           "cpu_us_per_event": measured["ingest_batch"]["cpu_us_per_event"]}),
            compare("ingest 100-event batch POST vs bare endpoint",
                    measured["ingest_batch"]["events_per_s"],
                    measured["bare_batch"]["events_per_s"], target=None, unit="events/s",
                    baseline_name="bare FastAPI endpoint (validates, 202, no Kafka)"),
        ],
    }
