"""`make run`'s relaying of a child's output (deploy/local/run.py): bytes cut anywhere become the
same clean lines, terminal control sequences such as the faust spinner's are dropped, and an
unfinished line can be shown without waiting for its newline."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deploy.local.supervisor import MAX_LINE, clean, flush_partial, split_lines

SPINNER_END = b"\b\x1b[?25h"  # what faust's spinner leaves after "Worker ready", no newline


def feed(chunks: list[bytes], limit: int = MAX_LINE) -> tuple[list[str], bytes]:
    lines: list[str] = []
    pending = b""
    for chunk in chunks:
        more, pending = split_lines(pending, chunk, limit=limit)
        lines += more
    return lines, pending


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(data) + 1) for p in positions} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# log-like output: text, newlines, escape sequences, backspaces, carriage returns, any byte
pieces = st.one_of(
    st.text(max_size=20).map(str.encode), st.just(b"\n"), st.just(b"\r\n"),
    st.just(SPINNER_END), st.just(b"\x1b[31m"), st.just(b"\x1b]0;title\x07"),
    st.binary(max_size=8))
outputs = st.lists(pieces, max_size=40).map(b"".join)


@given(outputs, st.lists(st.integers(min_value=0), max_size=12), st.integers(1, 64))
def test_chunks_cut_anywhere_give_the_same_lines(data: bytes, positions: list[int],
                                                 limit: int) -> None:
    assert feed(cut(data, positions), limit) == feed([data], limit)


@given(outputs, st.integers(1, 64))
def test_the_unfinished_rest_stays_under_the_limit_and_nothing_is_lost(
        data: bytes, limit: int) -> None:
    lines, rest = feed([data], limit)
    assert len(rest) <= limit
    assert data.endswith(rest)
    if b"\n" not in data and len(data) <= limit:
        assert (lines, rest) == ([], data)


@given(outputs)
def test_relayed_lines_hold_no_control_characters(data: bytes) -> None:
    lines, rest = feed([data])
    for line in [*lines, flush_partial(rest)[0]]:
        assert not any((ord(c) < 32 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in line), line


def test_the_spinner_after_worker_ready_does_not_hold_back_the_next_lines() -> None:
    lines, rest = feed([b"[worker] Worker ready\n", SPINNER_END, b"[scoring] scored lead-1\n",
                        b"[scoring] scored lead-2\n"])
    assert lines == ["[worker] Worker ready", "[scoring] scored lead-1", "[scoring] scored lead-2"]
    assert rest == b""


@pytest.mark.parametrize(("raw", "text"), [
    (b"plain \ttext", "plain \ttext"),
    (b"\x1b[32mINFO\x1b[0m started", "INFO started"),
    (SPINNER_END + b"after", "after"),
    (b"progress 10%\rprogress 20%\r", "progress 10%progress 20%"),
    (b"crlf\r", "crlf"),
    (b"\x1b]0;window title\x07shown", "shown"),
    (b"\x1b=keypad", "keypad"),
    (b"caf\xc3\xa9 \xff", "caf\u00e9 \ufffd"),
])
def test_clean(raw: bytes, text: str) -> None:
    assert clean(raw) == text


def test_a_long_line_comes_out_in_pieces_of_the_limit() -> None:
    lines, rest = split_lines(b"", b"a" * 25 + b"\n" + b"b" * 12, limit=10)
    assert lines == ["a" * 10, "a" * 10, "a" * 5, "b" * 10]
    assert rest == b"bb"


@pytest.mark.parametrize(("pending", "text", "keep"), [
    (b"Password: ", "Password: ", b""),
    (SPINNER_END, "", b""),
    (b"starting \x1b[?2", "starting ", b"\x1b[?2"),  # the rest of the sequence is on its way
    (b"title \x1b]0;half", "title ", b"\x1b]0;half"),
    (b"lone escape \x1b", "lone escape ", b"\x1b"),
])
def test_flush_partial_keeps_a_cut_off_escape_sequence(pending: bytes, text: str,
                                                       keep: bytes) -> None:
    assert flush_partial(pending) == (text, keep)
