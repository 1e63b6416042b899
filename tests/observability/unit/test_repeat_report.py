"""The Kafka client's repeated lines are dropped, but their count is never lost: if the message
does not come again, the first line of any logger after the window reports it, and so does
`flush()` (at exit); the overflow guard reports what it forgets instead of keeping stale counts."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from services.common.observability.logging import RepeatFilter
from tests.observability.catalogue import ROOT


class Capture(logging.Handler):
    def __init__(self, repeats: RepeatFilter) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(repeats)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def summaries(self) -> list[tuple[str, str, int]]:
        return [(r.name, r.repeated, r.repeats_suppressed) for r in self.records  # type: ignore[attr-defined]
                if r.getMessage() == RepeatFilter.SUMMARY]


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def capture(clock: list[float]) -> Iterator[Capture]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handler = Capture(RepeatFilter(window=10.0, clock=lambda: clock[0]))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield handler
    root.handlers[:], root.level = handlers, level


KAFKA, OURS = logging.getLogger("aiokafka.conn"), logging.getLogger("services.test")


def test_a_count_is_reported_by_any_later_line_when_the_message_stops(
        capture: Capture, clock: list[float]) -> None:
    for _ in range(50):
        KAFKA.error("Unable connect to node %s", 1)
    OURS.info("still within the window")
    assert capture.summaries() == []
    clock[0] = 10.5  # the broker is back: the message never comes again
    OURS.info("a round went fine")
    assert capture.summaries() == [("aiokafka.conn", "Unable connect to node %s", 49)]
    assert [r.levelno for r in capture.records if r.name == "aiokafka.conn"] == [logging.ERROR] * 2
    OURS.info("and another")
    assert len(capture.summaries()) == 1  # reported once


def test_flush_reports_what_is_pending(capture: Capture, clock: list[float]) -> None:
    for _ in range(5):
        KAFKA.warning("Heartbeat failed")
    repeats = capture.filters[0]
    assert isinstance(repeats, RepeatFilter)
    repeats.flush()
    assert capture.summaries() == [("aiokafka.conn", "Heartbeat failed", 4)]
    repeats.flush()
    assert len(capture.summaries()) == 1


def test_the_overflow_guard_reports_the_counts_it_forgets(
        capture: Capture, clock: list[float]) -> None:
    for _ in range(3):
        KAFKA.error("Unable connect to node %s", 1)
    for n in range(1002):  # distinct messages (not templates): the guard clears its memory
        KAFKA.error(f"odd message {n}")
    assert capture.summaries() == [("aiokafka.conn", "Unable connect to node %s", 2)]
    clock[0] = 20.0
    KAFKA.error("Unable connect to node %s", 1)
    last = capture.records[-1]
    assert last.getMessage() == "Unable connect to node 1"
    assert not hasattr(last, "repeats_suppressed")  # not counted a second time


def test_a_service_that_exits_reports_what_it_dropped() -> None:
    code = ("import logging\n"
            "from services.common.observability.logging import configure_logging\n"
            "configure_logging('probe')\n"
            "for _ in range(5):\n"
            "    logging.getLogger('aiokafka.conn').error('Unable connect to node %s', 1)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60, cwd=ROOT)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["message"] for line in lines] == ["Unable connect to node 1",
                                                   RepeatFilter.SUMMARY]
    assert lines[1]["repeats_suppressed"] == 4 and lines[1]["service"] == "probe"
