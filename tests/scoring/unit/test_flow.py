"""Workaround 14 against mode's own flow control: a resume of a running flow keeps what its
queues hold; a resume after a suspension clears them as before."""

from __future__ import annotations

import logging

import pytest
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from services.scoring.adapters.flow import keep_running_flow


def _flow_with_records(records: list[int]) -> tuple[FlowControlEvent, FlowControlQueue[int]]:
    flow = FlowControlEvent()
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    keep_running_flow(flow)
    flow.resume()  # the first resume of a rebalance: the flow was suspended
    for record in records:
        queue.put_nowait(record)
    return flow, queue


def _held(queue: FlowControlQueue[int]) -> list[int]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_resuming_a_running_flow_keeps_the_records_fetched_since(
        caplog: pytest.LogCaptureFixture) -> None:
    flow, queue = _flow_with_records([5, 6, 7])
    with caplog.at_level(logging.INFO, logger="services.scoring.adapters.flow"):
        flow.resume()  # as faust's recovery does once it has resumed and sought the streams
    assert flow.is_active()
    assert _held(queue) == [5, 6, 7]
    assert "3 fetched records kept" in caplog.text


def test_resuming_after_a_suspension_still_clears_the_old_records() -> None:
    flow, queue = _flow_with_records([5, 6, 7])
    flow.suspend()  # a rebalance: what the queues hold belongs to the old assignment
    assert not flow.is_active()
    flow.resume()
    assert flow.is_active()
    assert _held(queue) == []


def test_a_second_install_changes_nothing() -> None:
    flow, queue = _flow_with_records([1])
    resume = flow.resume
    keep_running_flow(flow)  # a restarted app's on_start
    assert flow.resume is resume
    flow.suspend()
    flow.resume()
    assert _held(queue) == []
