"""The run's dispatch timings (deploy/chaos/processes.py): the variables are the ones dispatch
reads, and the window for late resends covers the longest path of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.chaos.processes import ChaosStack, DispatchTimings
from deploy.chaos.scenario import ALL_FAULTS, QUICK_TIMINGS, program_steps
from services.dispatch.settings import DispatchSettings


@pytest.mark.parametrize("timings", [DispatchTimings(), QUICK_TIMINGS])
def test_dispatch_reads_the_timings_the_window_is_derived_from(
        timings: DispatchTimings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in timings.env().items():
        monkeypatch.setenv(name, value)
    settings = DispatchSettings(DATABASE_URL="postgresql+asyncpg://x@127.0.0.1/x")
    assert (settings.sending_timeout_seconds, settings.recovery_poll_seconds,
            settings.poll_seconds, settings.http_timeout_seconds,
            settings.smtp_timeout_seconds, settings.lease_seconds) == (
        timings.sending_timeout, timings.recovery_poll, timings.poll, timings.http_timeout,
        timings.smtp_timeout, timings.lease)
    # an attempt interrupted mid-send: found 'sending' after the timeout (+ a recovery poll),
    # picked up within a delivery poll, sent within the HTTP timeout
    assert timings.late_window >= (settings.sending_timeout_seconds
                                   + settings.recovery_poll_seconds
                                   + settings.poll_seconds + settings.http_timeout_seconds)


def test_the_stack_passes_its_timings_to_dispatch(tmp_path: Path) -> None:
    stack = ChaosStack(tmp_path, smtp_port=1, webhook_url="http://127.0.0.1:1/hooks",
                       timings=DispatchTimings(sending_timeout=7.0))
    assert stack.base_env()["NURTURE_DISPATCH_SENDING_TIMEOUT_SECONDS"] == "7.0"


def test_the_expected_messages_come_from_the_program_and_every_fault_is_known() -> None:
    assert program_steps() == (("touch-1", "email"), ("touch-2", "webhook"),
                               ("touch-3", "email"))
    assert {"smtp-refused", "smtp-timeout", "http-timeout"} <= set(ALL_FAULTS)
