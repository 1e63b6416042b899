"""The gap decision of services/scoring/gaps.py: which offsets the stream skipped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.gaps import gap


def test_the_next_expected_offset_is_no_gap() -> None:
    assert list(gap(4, 4)) == []


def test_a_record_past_the_expected_one_leaves_a_gap() -> None:
    assert list(gap(4, 7)) == [4, 5, 6]


def test_a_record_before_the_expected_one_is_a_re_read_not_a_gap() -> None:
    assert list(gap(10, 3)) == []


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_the_gap_is_exactly_the_offsets_between(expected: int, offset: int) -> None:
    skipped = gap(expected, offset)
    assert len(skipped) == max(0, offset - expected)
    if skipped:
        assert (skipped.start, skipped.stop, skipped.step) == (expected, offset, 1)
