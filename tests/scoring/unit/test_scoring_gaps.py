"""The decisions of the gap guard (services/scoring/adapters/faust_app.py): which offsets the
stream skipped, where a generation's stream should start, and what the handled group may vouch
for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.adapters.faust_app import gap, start_offset, vouched


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


def test_the_handled_group_outranks_the_offsets_found_at_start_up() -> None:
    assert start_offset(done=None, handled=5, at_startup=8) == 5
    assert start_offset(done=None, handled=None, at_startup=8) == 8


def test_what_this_process_handled_moves_the_start_forward() -> None:
    assert start_offset(done=9, handled=5, at_startup=None) == 9
    assert start_offset(done=3, handled=5, at_startup=None) == 5
    assert start_offset(done=3, handled=None, at_startup=None) == 3


def test_nothing_known_is_none() -> None:
    assert start_offset(done=None, handled=None, at_startup=None) is None


def test_the_handled_group_vouches_only_for_what_was_handled_and_committed() -> None:
    assert vouched(committed=8, done=5) == 5  # faust committed past unhandled records
    assert vouched(committed=3, done=5) == 3  # handled, but outputs maybe not flushed yet
    assert vouched(committed=None, done=5) is None
    assert vouched(committed=8, done=None) is None


@given(handled=st.integers(0, 1000), acked_extra=st.integers(0, 50),
       committed_lag=st.integers(0, 50), done_lag=st.integers(0, 50))
def test_a_restart_never_starts_past_the_first_record_that_was_not_handled(
        handled: int, acked_extra: int, committed_lag: int, done_lag: int) -> None:
    """Records [0, handled) were handled; faust acked `acked_extra` more (skipped ones) and may
    have committed anything up to there. Whatever the handled group recorded earlier, a new
    worker's start is at or before `handled`: nothing skipped is left behind."""
    faust_committed = max(0, handled + acked_extra - committed_lag)
    done_then = max(0, handled - done_lag)  # the handled group was recorded a while ago
    recorded = vouched(committed=faust_committed, done=done_then)
    start = start_offset(done=None, handled=recorded, at_startup=faust_committed)
    assert start is not None and start <= handled
