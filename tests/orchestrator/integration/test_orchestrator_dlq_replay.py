"""`nurture-dlq replay` after a fix, against the real orchestrator: only the dead letters the
filters pick (`--since`, `--reason`) go back to their origin topic, and replaying the same
letters twice is harmless: the orchestrator processes the event once and counts the second
copy as a duplicate."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from services.common.deadletter import Origin, dead_letter
from services.common.dlq import run
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.orchestrator.integration.test_orchestrator_service import (  # noqa: F401 - fixtures
    kafka,
    orchestrators,
    profile,
    schema,
)
from tests.support import read_topic, wait_until


async def metric(url: str, outcome: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    prefix = f'nurture_orchestrator_events_total{{outcome="{outcome}"}} '
    return sum(float(line.removeprefix(prefix)) for line in text.splitlines()
               if line.startswith(prefix))


async def test_replay_filters_and_is_idempotent(
        kafka: KafkaSettings, orchestrators: Callable[[], Any]) -> None:  # noqa: F811
    topics = Topics(kafka.topic_prefix)
    now = datetime.now(UTC)
    letters = [  # (lead, failed at, error): only the first matches --since 1h --reason timeout
        ("lead-new", now, "OperationalError: timeout"),
        ("lead-old", now - timedelta(hours=3), "OperationalError: timeout"),
        ("lead-other", now, "KeyError: 'x'")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for n, (lead, failed_at, error) in enumerate(letters):
            key, value, headers = dead_letter(
                key=lead.encode(), value=profile(lead)[1], error=error,
                origin=Origin(topics.scored_events, 0, n), consumer="nurture-orchestrator",
                failed_at=failed_at)
            await producer.send_and_wait(topics.deadletter, value, key=key, headers=headers)
    finally:
        await producer.stop()
    url = await orchestrators()
    args = argparse.Namespace(command="replay", since="1h", reason="timeout", consumer=None,
                              dry_run=False)
    assert await run(args, kafka) == 0
    assert await run(args, kafka) == 0  # again: a fix replayed twice by mistake

    async def settled() -> bool:
        return await metric(url, "processed") + await metric(url, "duplicate") >= 2
    await wait_until(settled, timeout=60, what="both replayed copies consumed")
    assert (await metric(url, "processed"), await metric(url, "duplicate")) == (1, 1)
    replayed = await read_topic(kafka.bootstrap_servers, topics.scored_events,
                                until=lambda rs: len(rs) >= 2)
    assert {r.key for r in replayed} == {b"lead-new"}
