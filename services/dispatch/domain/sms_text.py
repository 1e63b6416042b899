"""Fitting an SMS body into a bounded number of segments (pure).

A text in the GSM-7 alphabet takes 160 characters in one segment, 153 per segment when split;
anything outside it (most emoji, many accents) switches the whole message to UCS-2: 70, or 67
per segment. A body that does not fit is cut at a word boundary and ends with an ellipsis, so a
person never pays for, or reads, a runaway message."""

from __future__ import annotations

# The GSM 03.38 basic character set (the extension table's characters count double; we treat
# them as outside the alphabet, which only errs towards shorter messages).
GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
ELLIPSIS = "..."


def capacity(text: str, segments: int) -> int:
    """How many characters of `text`'s encoding fit in `segments` segments."""
    single, multi = (160, 153) if set(text) <= GSM7 else (70, 67)
    return single if segments == 1 else multi * segments


def fit(text: str, max_segments: int = 2) -> str:
    """`text`, or its longest word-boundary prefix plus an ellipsis that fits."""
    text = text.strip()
    limit = capacity(text, max_segments)
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    cut = text[:room]
    if " " in cut and not text[room].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:-") + ELLIPSIS
