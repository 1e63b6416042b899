"""Regression (found by the fault run): while the broker is down aiokafka's producer retries
without a pause and logs thousands of identical errors a second. The service log lets one per
message through every 10 s and says how many it dropped; our own lines are never dropped."""

from __future__ import annotations

import json
import logging

import pytest

from services.common.observability.logging import RepeatFilter, configure_logging


def test_a_broker_outage_storm_becomes_one_line_per_window(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", fmt="json")
    kafka_log, ours = logging.getLogger("aiokafka"), logging.getLogger("services.test")
    for _ in range(500):
        kafka_log.error("Unable connect to node with id %s: %s", 1, "refused")
        kafka_log.error("Unable to update metadata from %s", [1])
    for n in range(3):
        ours.error("round failed, retrying", extra={"round": n})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["logger"] for line in lines] == ["aiokafka", "aiokafka"] + ["services.test"] * 3


def test_the_next_line_after_the_window_counts_the_dropped_ones() -> None:
    now = [0.0]
    repeats = RepeatFilter(window=10.0, clock=lambda: now[0])

    def record(name: str = "aiokafka.client") -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, "Unable connect to %s",
                                 ("x",), None)
    assert repeats.filter(record())
    assert [repeats.filter(record()) for _ in range(99)] == [False] * 99
    assert repeats.filter(record("services.dispatch"))  # not the Kafka client: always through
    now[0] = 10.5
    later = record()
    assert repeats.filter(later)
    assert later.repeats_suppressed == 99
    assert not repeats.filter(record())
