"""Helpers for integration tests: isolated topics, reading topics back, running a real server.
Everything waits by polling with a deadline; nothing sleeps for a fixed time to synchronize."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from deploy.local.stack import free_port
from services.common.settings import KafkaSettings
from services.common.topics import ensure_topics


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def isolated_kafka(bootstrap: str, partitions: int = 3) -> KafkaSettings:
    """Settings with a topic prefix no other test uses, and those topics created."""
    settings = KafkaSettings(bootstrap_servers=bootstrap,
                             NURTURE_TOPIC_PREFIX=unique("t") + ".")  # type: ignore[call-arg]
    await ensure_topics(settings, partitions=partitions)
    return settings


async def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, polling until `until(records)` or timeout."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique("g"),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
            if until(records):
                return records
        raise AssertionError(f"timed out reading {topic}: got {len(records)} records")
    finally:
        await consumer.stop()


async def wait_until(check: Callable[[], Any], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app under a real uvicorn server on a free loopback port; yield its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), timeout=20, what="server start")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
