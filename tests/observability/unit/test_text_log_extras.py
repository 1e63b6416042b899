"""The text log format (`NURTURE_LOG_FORMAT=text`, local runs and the integration tests' worker
logs) keeps a line's `extra=` fields, as one JSON object at its end; before, it dropped them,
and a dead letter's reason or a stall report's consumer state was only in the JSON format."""

from __future__ import annotations

import json
import logging

import pytest

from services.common.observability.logging import configure_logging


def test_a_text_line_ends_with_its_extra_fields(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", fmt="text")
    logging.getLogger("services.test").warning(
        "stalled %d", 2, extra={"partitions": ["events[1]"], "state": {"flow_active": True}})
    line = capsys.readouterr().err.strip()
    assert "WARNING services.test: stalled 2 " in line
    assert json.loads(line[line.index("{"):]) == {
        "partitions": ["events[1]"], "state": {"flow_active": True}}


def test_a_text_line_without_extra_fields_is_the_plain_line(
        restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", fmt="text")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("services.test").exception("failed")
    out = capsys.readouterr().err
    assert out.splitlines()[0].endswith("ERROR   services.test: failed")
    assert "ValueError: boom" in out
