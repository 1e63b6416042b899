"""`nurture-dlq` against the real broker: list dead letters with filters, replay the originals."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from services.common.kafka.deadletter import Origin, dead_letter
from services.common.kafka.topics import Topics
from services.operator.dlq import read_all, run
from tests.support import isolated_kafka, read_topic


async def test_list_filters_and_replay_puts_the_original_bytes_back(
        kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap)
    topics = Topics(kafka.topic_prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for n, error in enumerate(["value is not JSON: x", "KeyError: 'subject'"]):
            key, value, headers = dead_letter(
                key=f"lead-{n}".encode(), value=f"original-{n}".encode(),
                origin=Origin(topics.events, 0, n), error=error, consumer="nurture-scoring",
                failed_at=datetime.now(UTC),  # its own headers kept; an old replay mark not
                headers=[("ce_id", f"e-{n}".encode()), ("nurture-replayed-from", b"9/9")])
            await producer.send_and_wait(topics.deadletter, value, key=key, headers=headers)
        await producer.send_and_wait(topics.deadletter, b"not a dead letter")
    finally:
        await producer.stop()

    letters, unreadable = await read_all(kafka, topics.deadletter)
    assert [letter.error for letter in letters] == ["value is not JSON: x",
                                                    "KeyError: 'subject'"]
    assert unreadable == 1

    args = argparse.Namespace(command="replay", since="1h", reason="not json", consumer=None,
                              dry_run=False)
    assert await run(args, kafka) == 0
    replayed = await read_topic(kafka.bootstrap_servers, topics.events,
                                until=lambda rs: len(rs) >= 1)
    assert [(r.key, r.value) for r in replayed] == [(b"lead-0", b"original-0")]
    kept, mark = replayed[0].headers
    assert kept == ("ce_id", b"e-0") and mark[0] == "nurture-replayed-from"
    assert re.fullmatch(rb"[0-9]+/0", mark[1])
