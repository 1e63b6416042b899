"""The counting of the fault run (deploy/chaos/tally.py): what passes, and each way it fails."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deploy.chaos.tally import (
    FaultRecord,
    Observed,
    Plan,
    duplicates,
    first_after,
    table,
    verdict,
)

PLAN = Plan(leads=2, events_per_lead=3, touches=3)
EVENTS = {f"s\x1fe{i}" for i in range(6)}
MESSAGES = {f"m{i}" for i in range(6)}


def clean() -> Observed:
    return Observed(accepted=set(EVENTS), scored=set(EVENTS), processed=set(EVENTS),
                    expected_messages=set(MESSAGES), received=sorted(MESSAGES),
                    dead_letters={},
                    faults=[FaultRecord("kill-ingest", 10.0, 12.0,
                                        {"accepted": 12.5, "delivered": 15.0})],
                    scored_records=8)


def test_a_clean_run_passes_with_its_figures() -> None:
    figures = verdict(PLAN, clean())
    assert figures["passed"], figures["problems"]
    assert (figures["events_accepted"], figures["events_scored"],
            figures["events_processed"]) == (6, 6, 6)
    assert (figures["messages_expected"], figures["messages_received"]) == (6, 6)
    assert figures["scored_redeliveries"] == 2
    assert figures["faults"] == [{"fault": "kill-ingest", "recovery_seconds": 3.0,
                                  "outage_seconds": 2.0,
                                  "progress": {"accepted": 0.5, "delivered": 3.0}}]
    assert "| result" in table(figures) and "PASS" in table(figures)


@pytest.mark.parametrize(("change", "problem"), [
    ({"accepted": EVENTS - {"s\x1fe0"}}, "1 events never accepted"),
    ({"scored": EVENTS - {"s\x1fe1"}}, "1 accepted events not scored"),
    ({"processed": EVENTS - {"s\x1fe2"}}, "1 accepted events not processed"),
    ({"received": sorted(MESSAGES - {"m0"})}, "1 messages not received"),
    ({"received": [*sorted(MESSAGES), "m3"]}, "1 duplicate deliveries"),
    ({"received": [*sorted(MESSAGES), "stray"]}, "1 unexpected messages received"),
    ({"expected_messages": MESSAGES - {"m5"}}, "5 messages planned by the orchestrator"),
    ({"dead_letters": {"nurture-dispatch: template": 2}}, "2 dead letters"),
    ({"faults": [FaultRecord("kill-dispatch", 1.0, 2.0, {"delivered": None})]},
     "kill-dispatch did not recover"),
])
def test_each_kind_of_loss_or_excess_fails_the_run(change: dict[str, object],
                                                  problem: str) -> None:
    figures = verdict(PLAN, replace(clean(), **change))  # type: ignore[arg-type]
    assert not figures["passed"]
    assert any(p.startswith(problem) for p in figures["problems"]), figures["problems"]
    assert "FAIL" in table(figures)


def test_recovery_is_until_the_slowest_watched_stage_moved_again() -> None:
    assert FaultRecord("f", 0.0, 5.0, {"a": 6.0, "b": 9.5}).recovery_seconds == 4.5
    assert FaultRecord("f", 0.0, 5.0, {"a": 6.0, "b": None}).recovery_seconds is None
    assert FaultRecord("f", 0.0, 5.0, {}).recovery_seconds is None


def test_first_after_and_duplicates() -> None:
    assert first_after([9.0, 3.0, 7.0, 5.0], 5.0) == 7.0
    assert first_after([1.0, 2.0], 2.0) is None
    assert duplicates(["a", "b", "a", "a", "c"]) == {"a": 2}
