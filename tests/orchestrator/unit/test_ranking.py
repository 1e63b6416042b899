"""The ranking's order (`domain/ranking.py`): within a fit group the index order `(sign, key)`
is the order by score at any time, and paging group by group from cursors gives exactly the
brute-force order (score, lead id, both descending), however the scores moved."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records.scored import decayed
from services.orchestrator.domain.ranking import BadCursor, Cursor, Rank, order, page, rank_of

D = 86400.0
HALF = 30 * D
T0 = 1_790_000_000.0


def kept(fit: float, engagement: float, as_of: float) -> dict[str, object]:
    return {"fit": fit, "engagement": engagement, "total": fit + engagement, "as_of": as_of,
            "half_life": HALF}


def test_a_rank_scores_as_the_decay_law() -> None:
    for engagement in (80.0, -30.0, 0.0):
        rank = rank_of(kept(10.0, engagement, T0))
        assert rank is not None
        for days in (0, 1, 45, 400):
            assert rank.score(T0 + days * D) == pytest.approx(
                10.0 + decayed(engagement, HALF, days * D), abs=1e-9)
    assert rank_of({"fit": 0.0, "engagement": 5.0, "total": 5.0}) is None  # no half-life


def fetch(ranks: dict[str, Rank], limit: int, cursor: Cursor | None) -> list[tuple[str, Rank]]:
    """What the SQL does: per fit group, the `limit + 1` first by (sign, key, lead id) desc
    after the cursor's start in that group."""
    out: list[tuple[str, Rank]] = []
    for fit in sorted({r.fit for r in ranks.values()}):
        group = sorted(((r.sign, r.key, lead), lead, r) for lead, r in ranks.items()
                       if r.fit == fit)
        group.reverse()
        if cursor is not None:
            sign, key, lead_id = cursor.start(fit)
            group = [g for g in group if (g[0][:2] < (sign, key) or
                                          (g[0][:2] == (sign, key) and g[1] < lead_id))] \
                if lead_id is not None else [g for g in group if g[0][:2] <= (sign, key)]
        out += [(lead, r) for _, lead, r in group[:limit + 1]]
    return out


leads_strategy = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=4),
    st.tuples(st.sampled_from([-20.0, 0.0, 10.0, 25.0]),
              st.sampled_from([0.0, 5.0, 40.0, 120.0, -15.0, 3.5]),
              st.integers(0, 60)),
    min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(leads=leads_strategy, limit=st.integers(1, 7),
       days_later=st.sampled_from([0, 1, 30, 200, 3000]))  # 3000: faded to equal scores
def test_paging_by_fit_groups_is_the_brute_force_order(
        leads: dict[str, tuple[float, float, int]], limit: int, days_later: int) -> None:
    ranks = {lead: rank_of(kept(fit, eng, T0 + day * D))
             for lead, (fit, eng, day) in leads.items()}
    assert all(r is not None for r in ranks.values())
    ranks_ok = {k: v for k, v in ranks.items() if v is not None}
    t = T0 + days_later * D
    # by score, ties in the index's order: every lead once
    expected = [(s, lead) for s, lead, _ in sorted(
        ((r.score(t), lead, r) for lead, r in ranks_ok.items()),
        key=lambda x: order(*x), reverse=True)]
    seen: list[tuple[float, str]] = []
    cursor = None
    for _ in range(len(leads) + 1):
        rows, cursor = page(fetch(ranks_ok, limit, cursor), t, limit, cursor)
        seen += [(score, lead) for lead, score, _ in rows]
        if cursor is None:
            break
        cursor = Cursor.decode(cursor.encode())  # as the client sends it back
    assert [lead for _, lead in seen] == [lead for _, lead in expected]
    assert sorted(lead for _, lead in seen) == sorted(leads)
    assert [s for s, _ in seen] == pytest.approx([s for s, _ in expected])


def test_the_order_changes_as_scores_fade() -> None:
    """A fit-heavy lead with little engagement overtakes an engaged one without fit."""
    ranks = {"fit": rank_of(kept(40.0, 5.0, T0)), "busy": rank_of(kept(0.0, 80.0, T0))}
    ok = {k: v for k, v in ranks.items() if v is not None}
    first, _ = page(fetch(ok, 10, None), T0, 10, None)
    later, _ = page(fetch(ok, 10, None), T0 + 60 * D, 10, None)
    assert [lead for lead, _, _ in first] == ["busy", "fit"]
    assert [lead for lead, _, _ in later] == ["fit", "busy"]
    assert math.isclose(later[1][1], 20.0)


def test_leads_whose_scores_faded_to_the_same_value_are_all_listed() -> None:
    """Long quiet, their engagement is below the last digit of the fit: equal scores, in the
    index's order, none lost between pages."""
    ranks = {lead: rank_of(kept(30.0, engagement, T0))
             for lead, engagement in (("a", 20.0), ("b", 10.0), ("c", 0.0))}
    ok = {k: v for k, v in ranks.items() if v is not None}
    t, seen, cursor = T0 + 3000 * D, [], None
    assert len({r.score(t) for r in ok.values()}) == 1
    for _ in range(5):
        rows, cursor = page(fetch(ok, 1, cursor), t, 1, cursor)
        seen += [lead for lead, _, _ in rows]
        if cursor is None:
            break
    assert seen == ["a", "b", "c"]


def test_a_cursor_that_was_not_given_is_refused() -> None:
    with pytest.raises(BadCursor):
        Cursor.decode("not-a-cursor")
    forged = Cursor(T0, 10.0, "x", 0.0, 1, 1.0, 0.0).encode()  # a half-life of 0
    with pytest.raises(BadCursor):
        Cursor.decode(forged)
