"""Poison records on the scored-events topic, through the real orchestrator consumer: bytes that
are not JSON, JSON that is not a scored event and an event that violates the contract (no
subject) each reach the dead-letter topic with the original bytes, the reason and the origin,
and the good record after them on the same partition is still processed."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from tests.orchestrator.integration.test_orchestrator_service import (  # noqa: F401 - fixtures
    kafka,
    orchestrators,
    produce,
    profile,
    schema,
    scored,
)
from tests.support import read_topic


async def test_poison_scored_events_are_dead_lettered_and_the_partition_goes_on(
        kafka: KafkaSettings, orchestrators: Callable[[], Any]) -> None:  # noqa: F811
    topics = Topics(kafka.topic_prefix)
    garbage = b"\x00\xffnot json at all"
    not_scored = orjson.dumps({"hello": "world"})
    no_subject = orjson.dumps({"event": {"id": "e-x", "source": "itest",
                                         "type": "web.page_viewed", "data": {}},
                               "score": {"lead_id": "lead-p", "as_of": "2026-11-20T10:00:00Z"}})
    await orchestrators()
    await produce(kafka, [("lead-p", garbage), ("lead-p", not_scored), ("lead-p", no_subject),
                          profile("lead-p"), ("lead-p", scored("lead-p", "v1", "/pricing"))])
    letters = [orjson.loads(r.value) for r in await read_topic(
        kafka.bootstrap_servers, topics.deadletter, until=lambda rs: len(rs) >= 3, timeout=60)]
    assert [base64.b64decode(letter["value_b64"]) for letter in letters] == [
        garbage, not_scored, no_subject]
    assert [letter["error"] for letter in letters] == [
        letters[0]["error"], "not a ScoredEvent: event: Field required; score: Field required",
        "not a ScoredEvent: event: missing or empty 'subject'"]
    assert letters[0]["error"].startswith("value is not JSON")
    assert {letter["consumer"] for letter in letters} == {"nurture-orchestrator"}
    assert {letter["origin"]["topic"] for letter in letters} == {topics.scored_events}
    assert [letter["origin"]["offset"] for letter in letters] == [0, 1, 2]
    stages = await read_topic(kafka.bootstrap_servers, topics.stages,
                              until=lambda rs: len(rs) >= 1, timeout=60)
    assert orjson.loads(stages[0].value)["lead_id"] == "lead-p"
