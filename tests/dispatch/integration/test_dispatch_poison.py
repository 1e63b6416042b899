"""Poison records on the dispatch topic, through the real consumer: malformed bytes, a command
that violates the schema and one whose template fails to render each reach the dead-letter
topic with the original bytes, the reason and the origin, and the command after them is still
delivered (no crash loop, no stuck partition)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from services.common.config.settings import KafkaSettings
from tests.dispatch.integration.dispatch_harness import (
    SmtpSink,
    command,
    dead_letters,
    dispatch_service,
    produce,
)
from tests.support import isolated_kafka, wait_until

TEMPLATES = Path(__file__).resolve().parents[3] / "config" / "templates"


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = SmtpSink()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_poison_commands_are_dead_lettered_whole_and_the_next_one_is_sent(
        database_url: str, kafka_bootstrap: str, sink: SmtpSink, tmp_path: Path) -> None:
    kafka: KafkaSettings = await isolated_kafka(kafka_bootstrap)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "subject.txt").write_text("Hello")
    (tmp_path / "broken" / "body.txt").write_text("{% if %}never closed")
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "subject.txt").write_text("Hello {{ first_name }}")
    (tmp_path / "good" / "body.txt").write_text("Hi {{ first_name }}")
    garbage = b"\xff\xfe\x00 not a command"
    violating = orjson.dumps({"message_id": "m-1", "lead_id": "lead-1", "channel": "pigeon"})
    unrenderable = command("lead-1", template="broken")
    good = command("lead-1", template="good")
    async with dispatch_service(database_url, kafka, smtp_port=sink.port,
                                templates=str(tmp_path)) as run:
        await produce(kafka, [garbage, violating, unrenderable, good])
        letters = await dead_letters(run, 3)
        await wait_until(lambda: len(sink.received) >= 1, timeout=60, what="the good email")
    originals = [base64.b64decode(letter["value_b64"]) for letter in letters]
    assert originals[:2] == [garbage, violating]
    assert orjson.loads(originals[2]) == unrenderable
    assert letters[0]["error"].startswith("not a dispatch command")
    assert "channel" in letters[1]["error"]
    assert letters[2]["error"].startswith("template_error")
    assert {letter["consumer"] for letter in letters} == {"nurture-dispatch"}
    assert [letter["origin"]["topic"] for letter in letters] == [run.topics.dispatch] * 3
    assert len({(letter["origin"]["partition"], letter["origin"]["offset"])
                for letter in letters}) == 3
    assert [m["X-Nurture-Message-Id"] for m in sink.received] == [good["message_id"]]
