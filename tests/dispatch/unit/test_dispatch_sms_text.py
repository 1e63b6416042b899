from __future__ import annotations

import pytest

from services.dispatch.domain.sms_text import capacity, fit


@pytest.mark.parametrize(("text", "segments", "chars"), [
    ("plain text", 1, 160), ("plain text", 2, 306), ("naïve café ✓", 1, 70),
    ("naïve café ✓", 3, 201),
])
def test_capacity_by_encoding(text: str, segments: int, chars: int) -> None:
    assert capacity(text, segments) == chars


def test_short_text_is_untouched_and_long_text_is_cut_at_a_word() -> None:
    assert fit("  Hi Ada, your demo is booked.  ") == "Hi Ada, your demo is booked."
    long = "word " * 100
    out = fit(long, 1)
    assert len(out) <= 160
    assert out.endswith("...")
    assert out[:-3].endswith("word")


def test_one_emoji_switches_to_the_shorter_unicode_budget() -> None:
    out = fit("🎉 " + "x" * 200, 1)
    assert len(out) <= 70 and out.endswith("...")
