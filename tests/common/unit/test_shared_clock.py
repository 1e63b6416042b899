"""`SharedClock`: ingest and dispatch follow the orchestrator's controllable clock by reading its
offset; while the orchestrator does not answer, the last offset holds (and it says so once)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from services.common.clock import SharedClock, SystemClock, clock_of
from services.common.config.settings import ClockSettings

URL = "http://orchestrator.test/v1/admin/clock"


def test_the_wall_clock_unless_a_clock_url_is_set() -> None:
    assert isinstance(clock_of(ClockSettings()), SystemClock)
    assert isinstance(clock_of(ClockSettings(url=URL)), SharedClock)


async def test_it_reads_the_offset_and_keeps_the_last_one_while_unreachable(
        caplog: pytest.LogCaptureFixture) -> None:
    answers: list[httpx.Response] = []
    seen: list[httpx.Request] = []

    def orchestrator(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    clock = SharedClock(ClockSettings(url=URL, token=SecretStr("admin")))
    async with httpx.AsyncClient(transport=httpx.MockTransport(orchestrator)) as client:
        answers.append(httpx.Response(200, json={"offset_seconds": 90 * 86400.0, "now": 1.0}))
        await clock.refresh(client)
        assert abs(clock.now() - (datetime.now(UTC) + timedelta(days=90))) < timedelta(seconds=5)
        assert seen[0].headers["Authorization"] == "Bearer admin"
        with caplog.at_level(logging.WARNING):
            answers += [httpx.Response(503), httpx.Response(404)]
            await clock.refresh(client)
            await clock.refresh(client)
        assert clock.offset == 90 * 86400.0
        assert len([r for r in caplog.records if "shared clock" in r.getMessage()]) == 1
        answers.append(httpx.Response(200, json={"offset_seconds": 0.0, "now": 1.0}))
        await clock.refresh(client)
        assert clock.offset == 0.0 and not clock.failing
