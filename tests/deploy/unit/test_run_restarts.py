"""`make run`'s restart decision (deploy/local/run.py): the back-off doubles while a service keeps
exiting soon after it started, is capped, and starts over once it stayed up; exits are named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.local.supervisor import Backoff, describe_exit

POLICY = Backoff(first=1.0, most=30.0, stable=60.0)


@pytest.mark.parametrize(("previous", "uptime", "delay"), [
    (None, 0.0, 1.0),      # first exit
    (None, 500.0, 1.0),
    (1.0, 0.5, 2.0),       # keeps crashing: doubles
    (2.0, 3.0, 4.0),
    (16.0, 1.0, 30.0),     # capped
    (30.0, 1.0, 30.0),
    (30.0, 59.9, 30.0),
    (30.0, 60.0, 1.0),     # stayed up a minute: starts over
])
def test_restart_delay(previous: float | None, uptime: float, delay: float) -> None:
    assert POLICY.delay(previous, uptime) == delay


@given(st.lists(st.floats(min_value=0, max_value=120), max_size=30))
def test_delays_stay_between_first_and_most(uptimes: list[float]) -> None:
    previous = None
    for uptime in uptimes:
        delay = POLICY.delay(previous, uptime)
        assert POLICY.first <= delay <= POLICY.most
        previous = delay


def test_a_crash_loop_backs_off_1_2_4_8_16_30() -> None:
    previous, delays = None, []
    for _ in range(7):
        previous = POLICY.delay(previous, uptime=0.1)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(("returncode", "text"), [
    (0, "exited with code 0"),
    (3, "exited with code 3"),
    (-9, "was killed by SIGKILL"),
    (-15, "was killed by SIGTERM"),
    (-200, "was killed by signal 200"),
])
def test_describe_exit(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text
