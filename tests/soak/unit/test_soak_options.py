"""The endurance run's settings: its default rate (half the measured maximum,
deploy/soak/rate.py), the retention the services are given, what a caught-up group may trail
by, the program's timing, and the fault run's stack taking the soak's program and variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.chaos.processes import ChaosStack
from deploy.soak.rate import FALLBACK, default_rate
from deploy.soak.run import PROGRAM, SoakOptions, small, step_offsets


def bench_run(date: str, top: float | None, *, sends: int = 900, events: int = 9000,
              quick: bool = False) -> dict[str, Any]:
    steps = [{"offered_events_per_s": top, "events": events, "sends": sends}] if top else []
    measured = {"max_sustained_events_per_s": top, "steps": steps} if top else {}
    return {"quick": quick, "components": {"e2e": {"date": date, "measured": measured}}}


@pytest.mark.parametrize(("runs", "expected"), [
    (None, FALLBACK),
    ({}, FALLBACK),
    ({"x": bench_run("2026-11-24", None)}, FALLBACK),  # a run without the end-to-end step
    # 600 events/s, 10% sends: half is 30 sends/s, 3 messages a lead -> 10 leads/s (events
    # would allow 100)
    ({"after": bench_run("2026-11-24T11:30", 600)}, 10.0),
    # the newest run counts, a --quick one never
    ({"old": bench_run("2026-11-24T10:47", 200), "new": bench_run("2026-11-24T11:30", 600),
      "quick": bench_run("2026-11-25", 3000, quick=True)}, 10.0),
    # every event a send: sends bind (300 / 2 / 3 = 50)
    ({"x": bench_run("2026-11-24", 300, sends=3000, events=3000)}, 50.0),
    # no sends in the step: events bind (half of 120 events/s, 3 events a lead)
    ({"x": bench_run("2026-11-24", 120, sends=0)}, 20.0),
])
def test_the_default_rate_is_half_the_newest_measured_maximum(
        runs: dict[str, Any] | None, expected: float) -> None:
    rate, source = default_rate(None if runs is None else {"runs": runs}, events_per_lead=3,
                                messages_per_lead=3)
    assert rate == expected
    assert ("bench/results.json" in source) and (("50%" in source) == (expected != FALLBACK))


def test_the_services_get_fractional_days_and_the_prune_interval() -> None:
    env = SoakOptions(out=Path(), retention=300.0, prune_every=60.0).service_env()
    assert env == {"NURTURE_DISPATCH_RETENTION_DAYS": "0.0034722222",
                   "NURTURE_ORCHESTRATOR_RETENTION_DAYS": "0.0034722222",
                   "NURTURE_DISPATCH_PRUNE_INTERVAL_SECONDS": "60",
                   "NURTURE_ORCHESTRATOR_PRUNE_INTERVAL_SECONDS": "60"}
    assert float(env["NURTURE_DISPATCH_RETENTION_DAYS"]) * 86400 == pytest.approx(300.0)


@pytest.mark.parametrize(("rate", "grace", "tolerance"), [
    (10.0, 5.0, 150),  # 10 leads/s x 3 events x 5 s
    (1.0, 5.0, 15),
    (0.01, 5.0, 1),  # never below one record
])
def test_a_caught_up_group_may_trail_by_the_load_of_the_grace(
        rate: float, grace: float, tolerance: int) -> None:
    assert SoakOptions(out=Path(), rate=rate, lag_grace=grace).lag_tolerance == tolerance


def test_the_program_waits_on_the_real_clock_and_the_soak_never_moves_it() -> None:
    assert step_offsets(PROGRAM) == {"touch-1": 0.0, "touch-2": 60.0, "touch-3": 120.0}
    opts = small(Path())
    assert opts.chaos().tick == 0 and opts.chaos().program == PROGRAM
    # longer than a kill -9 and restart, so a redelivery still finds its dedupe rows
    assert opts.retention >= 10 * opts.hold


def test_the_stack_runs_the_given_program_directory_and_adds_the_given_variables(
        tmp_path: Path) -> None:
    stack = ChaosStack(tmp_path, smtp_port=1, webhook_url="http://127.0.0.1:1/hooks",
                       programs=PROGRAM.parent,
                       extra_env=SoakOptions(out=tmp_path).service_env())
    env = stack.base_env()
    assert env["NURTURE_ORCHESTRATOR_PROGRAMS"] == str(PROGRAM.parent)
    assert env["NURTURE_DISPATCH_PRUNE_INTERVAL_SECONDS"] == "60"
