"""The counting of the fault run (deploy/chaos/tally.py): what passes, and each way it fails,
per (lead, step) rather than in total."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deploy.chaos.tally import (
    Delivery,
    FaultRecord,
    Observed,
    Plan,
    duplicates,
    first_after,
    messages,
    table,
    verdict,
)

STEPS = (("touch-1", "email"), ("touch-2", "webhook"), ("touch-3", "email"))
PLAN = Plan(leads=("a", "b"), events_per_lead=3, steps=STEPS)
EVENTS = {f"s\x1fe{i}" for i in range(6)}
PLANNED = {f"{lead}-{step}": (lead, step) for lead in ("a", "b") for step, _ in STEPS}


def delivery(lead: str, step: str, mid: str | None = None) -> Delivery:
    """What the peers record: emails know the lead (`To`), webhooks lead and step (body)."""
    kind = dict(STEPS)[step]
    return Delivery(kind, mid or f"{lead}-{step}", lead, step if kind == "webhook" else None)


ALL = [delivery(lead, step) for lead in ("a", "b") for step, _ in STEPS]


def clean() -> Observed:
    return Observed(accepted=set(EVENTS), scored=set(EVENTS), processed=set(EVENTS),
                    planned=dict(PLANNED), received=list(ALL), dead_letters={},
                    faults=[FaultRecord("kill-ingest", 10.0, 12.0,
                                        {"accepted": 12.5, "delivered": 15.0})],
                    scored_records=8)


def test_a_clean_run_passes_with_its_figures() -> None:
    figures = verdict(PLAN, clean())
    assert figures["passed"], figures["problems"]
    assert (figures["events_accepted"], figures["events_scored"],
            figures["events_processed"]) == (6, 6, 6)
    assert (figures["messages_expected"], figures["messages_planned"],
            figures["messages_received"]) == (6, 6, 6)
    assert (figures["messages"]["email"]["expected"],
            figures["messages"]["webhook"]["expected"]) == (4, 2)
    assert figures["scored_redeliveries"] == 2
    assert figures["faults"] == [{"fault": "kill-ingest", "recovery_seconds": 3.0,
                                  "outage_seconds": 2.0,
                                  "progress": {"accepted": 0.5, "delivered": 3.0}}]
    assert "| result" in table(figures) and "PASS" in table(figures)


def test_one_lead_losing_a_touch_and_another_getting_an_extra_one_fails() -> None:
    """The totals match (6 planned, 6 received, no id twice), the per-lead count does not."""
    received = [d for d in ALL if d.message_id != "a-touch-3"] + [delivery("b", "touch-1", "x")]
    planned = {**{k: v for k, v in PLANNED.items() if k != "a-touch-3"}, "x": ("b", "touch-1")}
    figures = verdict(PLAN, replace(clean(), received=received, planned=planned))
    assert not figures["passed"]
    email = figures["messages"]["email"]
    assert (email["lost"], email["duplicates"], email["unexpected"]) == (1, 1, 0)
    assert email["examples"]["lost"] == ["a/touch-3"]
    assert email["examples"]["duplicates"] == ["b/touch-1"]
    assert any(p.startswith("1 email messages lost (e.g. a/touch-3)")
               for p in figures["problems"]), figures["problems"]
    assert any(p.startswith("1 email duplicate deliveries (e.g. b/touch-1)")
               for p in figures["problems"]), figures["problems"]


def test_an_email_to_the_wrong_lead_is_a_loss_and_a_duplicate() -> None:
    """The peer's `To` wins over the command: b's touch-3 reached a."""
    received = [d for d in ALL if d.message_id != "b-touch-3"] + [
        Delivery("email", "b-touch-3", "a", None)]
    figures = verdict(PLAN, replace(clean(), received=received))
    email = figures["messages"]["email"]
    assert (email["lost"], email["duplicates"]) == (1, 1)
    assert not figures["passed"]


def test_webhook_repeats_of_one_id_are_reported_but_email_repeats_are_duplicates() -> None:
    webhook_repeat = replace(clean(), received=[*ALL, delivery("a", "touch-2")])
    figures = verdict(PLAN, webhook_repeat)
    assert figures["passed"], figures["problems"]
    assert figures["raw_repeats"] == figures["messages"]["webhook"]["raw_repeats"] == 1
    assert figures["duplicates"] == 0
    assert "raw repeats" in table(figures)
    email_repeat = verdict(PLAN, replace(clean(), received=[*ALL, delivery("a", "touch-1")]))
    assert not email_repeat["passed"]
    assert email_repeat["messages"]["email"]["duplicates"] == 1


def test_a_webhook_under_a_second_id_is_a_duplicate() -> None:
    figures = verdict(PLAN, replace(clean(), received=[*ALL, delivery("a", "touch-2", "y")]))
    assert not figures["passed"]
    assert figures["messages"]["webhook"]["duplicates"] == 1


@pytest.mark.parametrize(("extra", "why"), [
    (Delivery("email", "stray", None, None), "message stray: no lead/step"),
    (Delivery("email", "z-touch-1", "z", None), "message z-touch-1: no lead/step"),
    (Delivery("webhook", "w", "z", "touch-2"), "z/touch-2"),
    (Delivery("webhook", "w", "a", "touch-1"), "a/touch-1"),  # touch-1 is an email
])
def test_deliveries_nobody_expected_are_unexpected(extra: Delivery, why: str) -> None:
    got = messages(PLAN, PLANNED, [*ALL, extra])[extra.kind]
    assert got["unexpected"] == 1 and got["examples"]["unexpected"] == [why]
    assert not verdict(PLAN, replace(clean(), received=[*ALL, extra]))["passed"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"accepted": EVENTS - {"s\x1fe0"}}, "1 events never accepted"),
    ({"scored": EVENTS - {"s\x1fe1"}}, "1 accepted events not scored"),
    ({"processed": EVENTS - {"s\x1fe2"}}, "1 accepted events not processed"),
    ({"received": ALL[1:]}, "1 email messages lost"),
    ({"received": ALL[:1] + ALL[2:]}, "1 webhook messages lost"),
    ({"planned": {k: v for k, v in PLANNED.items() if k != "b-touch-2"}},
     "5 messages planned by the orchestrator"),
    ({"planned": {**PLANNED, "b-touch-2": ("a", "touch-2")}},
     "6 messages planned by the orchestrator for 5 of the 6"),
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
