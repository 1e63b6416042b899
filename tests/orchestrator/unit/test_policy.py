"""The contact policy: caps, quiet hours in the lead's time zone (DST included), suppression,
consent and priorities; and the property that no lead ever exceeds its caps."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.lead import Contact, Lead
from services.orchestrator.domain.policy import Cap, ContactPolicy, QuietHours, check
from services.orchestrator.domain.program import EventMatch, Program, Step, Trigger

H, D = 3600, 86400
QUIET = QuietHours(time(20, 0), time(8, 0))
POLICY = ContactPolicy(caps=(Cap("email", 3, 7 * D), Cap("any", 4, 7 * D)), quiet_hours=QUIET)


def at(local: str, tz: str) -> float:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()


def lead(tz: str = "UTC", **profile: object) -> Lead:
    return Lead("l", profile={"email": "a@b.example", "phone": "+14155550123", "timezone": tz,
                              **profile})


@pytest.mark.parametrize(("local", "tz", "action", "until_local"), [
    ("2026-06-10T12:00", "Europe/Berlin", "send", None),
    ("2026-06-10T21:30", "Europe/Berlin", "defer", "2026-06-11T08:00"),
    ("2026-06-10T07:59", "Europe/Berlin", "defer", "2026-06-10T08:00"),
    ("2026-06-10T08:00", "Europe/Berlin", "send", None),
    ("2026-06-10T19:59", "America/New_York", "send", None),
    ("2026-06-10T23:00", "Asia/Tokyo", "defer", "2026-06-11T08:00"),
    # the night the clocks go forward in the US (2026-03-08): 8:00 EDT is still 8:00 local
    ("2026-03-07T22:00", "America/New_York", "defer", "2026-03-08T08:00"),
    # and back in Europe (2026-10-25)
    ("2026-10-24T23:00", "Europe/Berlin", "defer", "2026-10-25T08:00"),
])
def test_quiet_hours_in_the_leads_own_time_zone(local: str, tz: str, action: str,
                                                 until_local: str | None) -> None:
    verdict = check(POLICY, lead(tz), "email", at(local, tz))
    assert verdict.action == action
    if until_local:
        assert verdict.until == at(until_local, tz)
        assert verdict.reason == "quiet hours"


def test_unknown_time_zone_falls_back_to_the_policy_default() -> None:
    verdict = check(POLICY, lead("Mars/Olympus"), "email", at("2026-06-10T22:00", "UTC"))
    assert (verdict.action, verdict.until) == ("defer", at("2026-06-11T08:00", "UTC"))


def test_frequency_cap_defers_until_the_oldest_message_leaves_the_window() -> None:
    noon = at("2026-06-10T12:00", "UTC")
    busy = lead()
    busy.contacts = [Contact(noon - 6 * D, "email", "p"), Contact(noon - 2 * D, "email", "p"),
                     Contact(noon - H, "email", "p")]
    verdict = check(POLICY, busy, "email", noon)
    assert (verdict.action, verdict.reason, verdict.until) == (
        "defer", "frequency cap", noon + D)
    assert check(POLICY, busy, "sms", noon, expires_at=None).action == "drop"  # no consent


def test_overall_cap_counts_every_channel() -> None:
    noon = at("2026-06-10T12:00", "UTC")
    busy = lead(**{"consent.sms": "granted"})
    busy.contacts = [Contact(noon - i * H, ch, "p")
                     for i, ch in enumerate(["sms", "email", "sms", "email"], start=1)]
    verdict = check(POLICY, busy, "sms", noon)
    assert verdict.action == "defer"
    assert verdict.until == noon - 4 * H + 7 * D


def test_a_held_message_that_would_expire_is_dropped() -> None:
    night = at("2026-06-10T22:00", "UTC")
    verdict = check(POLICY, lead(), "email", night, expires_at=night + H)
    assert (verdict.action, verdict.reason) == ("drop", "expired: quiet hours")


@pytest.mark.parametrize(("profile", "suppressed", "channel", "reason"), [
    ({}, {"email": "unsubscribed"}, "email", "suppressed: unsubscribed"),
    ({}, {"all": "cold"}, "email", "suppressed: cold"),
    ({"consent.email": "denied"}, {}, "email", "no consent for email"),
    ({}, {}, "sms", "no consent for sms"),
    ({"consent.sms": "granted", "phone": None}, {}, "sms", "no phone number"),
    ({"email": None}, {}, "email", "no email address"),
])
def test_suppression_and_consent_drop_with_a_reason(
        profile: dict[str, object], suppressed: dict[str, str], channel: str,
        reason: str) -> None:
    the_lead = lead(**profile)
    the_lead.suppressed = suppressed
    verdict = check(POLICY, the_lead, channel, at("2026-06-10T12:00", "UTC"))
    assert (verdict.action, verdict.reason) == ("drop", reason)


def test_crm_tasks_and_webhooks_are_not_person_facing() -> None:
    night = lead()
    night.suppressed = {"all": "cold"}
    assert check(POLICY, night, "crm_task", at("2026-06-10T23:00", "UTC")).action == "send"


def test_higher_priority_program_gets_the_last_slot() -> None:
    def program(pid: str, priority: int) -> Program:
        return Program(id=pid, version=1, name=pid, priority=priority,
                       trigger=Trigger("event", event=EventMatch(frozenset({"web.x"}))),
                       steps=(Step("s", "send", channel="email", template=pid),))
    one_a_week = ContactPolicy(caps=(Cap("email", 1, 7 * D),), quiet_hours=None)
    decider = Decider([program("low", 10), program("high", 90)], one_a_week)
    fx = decider.on_event(lead(), {"type": "web.x", "data": {}}, {}, event_time=1e9, now=1e9)
    assert [c.template for c in fx.commands] == ["high"]
    assert [(n.program_id, n.status, n.reason) for n in fx.notes if n.status != "sent"] == [
        ("low", "deferred", "frequency cap")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["email", "sms"]), st.floats(0, 30 * D)),
                min_size=1, max_size=60))
def test_no_lead_ever_exceeds_its_caps(attempts: list[tuple[str, float]]) -> None:
    from services.orchestrator.domain.policy import record

    the_lead = lead(**{"consent.sms": "granted"})
    start = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    sent: list[tuple[float, str]] = []
    for channel, offset in sorted(attempts, key=lambda a: a[1]):
        now = start + offset
        if check(POLICY, the_lead, channel, now).action == "send":
            record(the_lead, channel, "p", now, POLICY)
            sent.append((now, channel))
    for cap in POLICY.caps:
        for t, _ in sent:
            in_window = [c for s, c in sent if t - cap.window_seconds < s <= t
                         and (cap.channel == "any" or c == cap.channel)]
            assert len(in_window) <= cap.max


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["web.a", "web.b"]), st.floats(0, 20 * D)),
                min_size=1, max_size=40))
def test_programs_competing_for_one_lead_never_exceed_the_caps(
        visits: list[tuple[str, float]]) -> None:
    """Two always-re-entering programs that send on every visit, fired through the Decider with
    its timers (deferred sends come back later): the sends still respect every cap."""
    from tests.orchestrator.unit.test_decide import fire_due

    def program(pid: str, etype: str, priority: int) -> Program:
        return Program(id=pid, version=1, name=pid, priority=priority, reentry="always",
                       trigger=Trigger("event", event=EventMatch(frozenset({etype}))),
                       steps=(Step("s", "send", channel="email", template=pid),))
    decider = Decider([program("a", "web.a", 70), program("b", "web.b", 30)], POLICY)
    the_lead = lead()
    start = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    sent: list[float] = []
    timers: list = []  # type: ignore[type-arg]
    for n, (etype, offset) in enumerate(sorted(visits, key=lambda v: v[1])):
        now = start + offset
        fired = fire_due(decider, the_lead, timers, now)
        timers = fired.timers
        sent += [c.created_at for c in fired.commands]
        fx = decider.on_event(the_lead, {"type": etype, "data": {}, "id": str(n)}, {},
                              event_time=now, now=now)
        sent += [c.created_at for c in fx.commands]
        timers += fx.timers
    sent += [c.created_at for c in fire_due(decider, the_lead, timers, start + 60 * D).commands]
    for t in sent:
        assert len([s for s in sent if t - 7 * D < s <= t]) <= 3


@pytest.mark.parametrize(("quiet_end", "now_local", "expected_local"), [
    # 02:30 does not exist on 2026-03-08 in New York (02:00 -> 03:00): the window ends at 03:30
    # EDT (the wall-clock time read with the pre-gap offset), after the gap, and never before now
    (time(2, 30), "2026-03-08T01:00", "2026-03-08T03:30"),
    # 01:30 happens twice on 2026-11-01 (fall back): the first one ends the window
    (time(1, 30), "2026-11-01T00:30", "2026-11-01T01:30"),
])
def test_quiet_hours_ending_inside_a_dst_gap_or_a_repeated_hour(
        quiet_end: time, now_local: str, expected_local: str) -> None:
    tz = "America/New_York"
    policy = ContactPolicy(caps=(), quiet_hours=QuietHours(time(22, 0), quiet_end))
    now = at(now_local, tz)
    verdict = check(policy, lead(tz), "email", now)
    assert verdict.action == "defer"
    assert verdict.until is not None and verdict.until > now
    local = datetime.fromtimestamp(verdict.until, ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")
    assert local == expected_local
