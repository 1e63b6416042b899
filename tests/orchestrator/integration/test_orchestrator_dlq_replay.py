"""`nurture-dlq replay` after a fix, against the real orchestrator: only the dead letters the
filters pick (`--since`, `--reason`) go back to their origin topic, and replaying the same
letters twice is harmless: the orchestrator processes the event once and counts the second
copy as a duplicate. An event whose decision failed is not marked processed, so its replay
after the fix is decided."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from services.common.config.settings import KafkaSettings
from services.common.kafka.deadletter import Origin, dead_letter
from services.common.kafka.topics import Topics
from services.operator.dlq import run
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.entrypoints.http.app import create_app
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator.integration.test_orchestrator_service import (  # noqa: F401 - fixtures
    API,
    PRICING,
    decider,
    kafka,
    orchestrators,
    produce,
    profile,
    schema,
)
from tests.support import read_topic, serve, wait_until


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


class BuggyDecider(Decider):
    """The real decision code with a bug: it chokes on profile upserts."""

    def on_event_for(self, lead: Any, lead_id: str, event: Any, score: Any, *,
                     event_time: float, now: float, scored_at: float | None = None) -> Any:
        if event.get("type") == "crm.lead_upserted":
            raise KeyError("company_size")
        return super().on_event_for(lead, lead_id, event, score, event_time=event_time,
                                    scored_at=scored_at,
                                    now=now)


async def test_an_event_whose_decision_failed_is_decided_after_the_fix_and_replay(
        database_url: str, schema: str, kafka: KafkaSettings) -> None:  # noqa: F811
    settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, api_token="api-token",
        timer_poll_seconds=0.1, relay_idle_seconds=0.05)
    topics = Topics(kafka.topic_prefix)
    buggy = BuggyDecider([PRICING], ContactPolicy(caps=(), quiet_hours=None))
    async with serve(create_app(bootstrap(settings, kafka, buggy))) as url:
        await produce(kafka, [profile("lead-9")])
        (letter,) = await read_topic(kafka.bootstrap_servers, topics.deadletter,
                                     until=lambda rs: len(rs) >= 1)
        assert orjson.loads(letter.value)["error"] == "KeyError: 'company_size'"
    replay = argparse.Namespace(command="replay", since="1h", reason="company_size",
                                consumer="nurture-orchestrator", dry_run=False)
    async with serve(create_app(bootstrap(settings, kafka, decider()))) as url, \
            httpx.AsyncClient() as client:  # the fixed release
        assert await run(replay, kafka) == 0

        async def decided() -> bool:
            r = await client.get(f"{url}/v1/leads/lead-9", headers=API)
            return r.status_code == 200
        await wait_until(decided, timeout=60, what="the replayed event decided")
        assert (await client.get(f"{url}/v1/leads/lead-9", headers=API)).json()[
            "profile"]["first_name"] == "Ada"
        assert await run(replay, kafka) == 0  # again, by mistake: a duplicate
        await wait_until(lambda: metric(url, "duplicate"), timeout=60,
                         what="the second copy consumed")
        assert await metric(url, "processed") == 1
