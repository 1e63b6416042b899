"""The decay law a scored event carries (`schemas/records/scored.py`): engagement halves every
half-life, fit stays; the crossing time decay alone reaches is exact, and an aged score reads as
the engine would score the lead then."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import LeadScore, ModelScore
from schemas.records.scored import crossing_time, decayed, next_crossing

DAY = 86400.0
HALF = 30 * DAY
T0 = datetime(2026, 9, 1, tzinfo=UTC).timestamp()


def score(fit: float, engagement: float, **more: object) -> ModelScore:
    return ModelScore.model_validate({
        "model": "b2b", "version": 1, "fit": fit, "engagement": engagement,
        "total": fit + engagement, "previous_total": None, "half_life": HALF,
        "thresholds": {"mql": 50.0, "sql": 100.0}, **more})


def test_engagement_halves_every_half_life() -> None:
    assert decayed(80.0, HALF, HALF) == pytest.approx(40.0)
    assert decayed(80.0, HALF, 2 * HALF) == pytest.approx(20.0)
    assert decayed(-10.0, HALF, HALF) == pytest.approx(-5.0)


def test_the_crossing_is_where_the_total_meets_the_threshold() -> None:
    # fit 10 + engagement 80: the total reaches 50 when engagement is 40, one half-life later
    assert crossing_time(10.0, 80.0, HALF, 50.0, T0) == pytest.approx(T0 + HALF)
    # at the threshold now: it falls below at once
    assert crossing_time(10.0, 40.0, HALF, 50.0, T0) == pytest.approx(T0)
    # below it, or a fit that holds the total above it, never cross by decay
    assert crossing_time(10.0, 30.0, HALF, 50.0, T0) is None
    assert crossing_time(60.0, 30.0, HALF, 50.0, T0) is None
    # negative engagement fades too: the total rises through a threshold below the fit
    assert crossing_time(60.0, -40.0, HALF, 40.0, T0) == pytest.approx(T0 + HALF)


def test_the_next_crossing_is_the_first_threshold_on_the_way_down() -> None:
    assert next_crossing(0.0, 160.0, HALF, {"mql": 50.0, "sql": 100.0}, T0) == \
        ("sql", "down", float(int(T0 + HALF * 0.678071905) + 1))
    assert next_crossing(0.0, 60.0, HALF, {"mql": 50.0, "sql": 100.0}, T0)[:2] == \
        ("mql", "down")
    assert next_crossing(0.0, 40.0, HALF, {"mql": 50.0}, T0) is None
    assert next_crossing(0.0, 0.0, HALF, {"mql": 50.0}, T0) is None


@given(fit=st.floats(-50, 50), engagement=st.floats(-100, 300),
       threshold=st.floats(-50, 150))
def test_at_the_crossing_second_the_score_is_across(fit: float, engagement: float,
                                                     threshold: float) -> None:
    found = next_crossing(fit, engagement, HALF, {"t": threshold}, T0)
    if found is None:  # then the score stays on its side of the threshold for ever
        for days in (0, 1, 30, 365, 3650):
            total = fit + decayed(engagement, HALF, days * DAY)
            assert (total >= threshold) == (fit + engagement >= threshold) or \
                abs(total - threshold) < 0.005
        return
    _, direction, at = found
    before = fit + decayed(engagement, HALF, at - 1.0 - T0)
    after = fit + decayed(engagement, HALF, at - T0)
    if direction == "down":
        assert after < threshold <= before + 1e-9
    else:
        assert before < threshold + 1e-9 and after >= threshold - 1e-9
    # within the half-lives it takes the engagement to fade to half a cent
    assert at.is_integer() and T0 < at <= T0 + HALF * math.log2(abs(engagement) / 0.005) + 1


def test_an_aged_score_decays_engagement_and_keeps_fit() -> None:
    now = score(20.0, 40.0, above=("mql",), breakdown=[
        {"rule": "pricing-page", "points": 30.0, "kind": "engagement"},
        {"rule": "senior", "points": 20.0, "kind": "fit"},
        {"rule": "webinar", "points": 10.0, "kind": "engagement"}])
    later = now.aged(HALF)
    assert (later.fit, later.engagement, later.total) == (20.0, 20.0, 40.0)
    assert later.above == ()  # 40 < mql
    assert [(c.rule, c.points) for c in later.breakdown] == [
        ("senior", 20.0), ("pricing-page", 15.0), ("webinar", 5.0)]
    assert later.previous_total == 60.0 and later.crossed == ()
    assert now.aged(0.0) is now


def test_a_score_written_before_the_half_life_was_carried_does_not_age() -> None:
    old = ModelScore.model_validate({"model": "b2b", "version": 1, "fit": 0.0,
                                     "engagement": 60.0, "total": 60.0,
                                     "previous_total": None})
    assert old.aged(10 * HALF) is old


def test_a_lead_score_as_of_a_later_time() -> None:
    as_of = datetime(2026, 9, 1, tzinfo=UTC)
    lead = LeadScore(lead_id="l", as_of=as_of, models={"b2b": score(0.0, 80.0)})
    later = lead.at(as_of + timedelta(days=60))
    assert later.as_of == as_of + timedelta(days=60)
    assert later.models["b2b"].total == 20.0
    assert lead.at(as_of - timedelta(days=1)) is lead
