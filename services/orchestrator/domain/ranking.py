"""Leads ranked by their score *now*, with an index instead of a sort of every lead (pure).

A lead's total at time `t` is `fit + engagement * 2^(-(t - as_of) / half_life)`
(`schemas.records.scored`). Written in the log domain, the engagement part is
`sign * 2^(key - t / half_life)` with `key = log2(|engagement|) + as_of / half_life`: a number
that does not change while the lead does nothing. So among leads of one model with the same fit,
the order by `(sign, key)` is the order by current score at every `t`, and an index on
`(model, fit, sign, key)` serves it. Fits are few (sums of a model's fit rules), so the best `n`
leads overall are the best `n` of each fit group, merged: the cost grows with the number of fit
values and the page size, never with the number of leads.

Pages follow the order (score, then the index's order), descending, as of one time `t` that the
cursor keeps, so paging is stable while scores keep moving. `t` is never before a lead's last
event (the listing ranks from now on; a key does not say what the score was before it)."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

INF = math.inf


@dataclass(frozen=True, slots=True)
class Rank:
    """What the index orders a lead's score in one model by."""

    fit: float
    sign: int  # 1: engagement above 0 (fades down), 0: none, -1: below 0 (fades up)
    key: float  # log2(|engagement|) + as_of / half_life, signed: larger ranks higher
    half_life: float

    def score(self, t: float) -> float:
        """The total at `t`."""
        if self.sign == 0:
            return self.fit
        return self.fit + self.sign * math.pow(2.0, self.sign * self.key - t / self.half_life)


def rank_of(kept: Mapping[str, Any]) -> Rank | None:
    """The rank of a kept score snapshot (`stages.snapshot`); None for one saved before scores
    carried their half-life (it is ranked from the lead's next event on)."""
    half_life, as_of = kept.get("half_life"), kept.get("as_of")
    if not half_life or as_of is None:
        return None
    fit, engagement = float(kept["fit"]), float(kept["engagement"])
    if engagement == 0.0:
        return Rank(fit, 0, 0.0, half_life)
    sign = 1 if engagement > 0 else -1
    return Rank(fit, sign, sign * (math.log2(abs(engagement)) + as_of / half_life), half_life)


def bound(score: float, fit: float, half_life: float, t: float) -> tuple[int, float]:
    """The largest `(sign, key)` of a lead with this `fit` whose score at `t` is at most
    `score`: the index range where the next page of that fit group starts."""
    gap = score - fit
    if gap > 0.0:
        return 1, math.log2(gap) + t / half_life
    if gap == 0.0:
        return 0, 0.0
    return -1, -(math.log2(-gap) + t / half_life)


class BadCursor(ValueError):
    """A cursor this API did not give (the API answers 400)."""


class PastTime(ValueError):
    """A listing asked for before now: ranks say where scores go from their last event on,
    not where they were (the API answers 400)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: its time, and the last lead's score and id (and its fit group)."""

    t: float
    score: float
    lead_id: str
    fit: float
    sign: int
    key: float
    half_life: float

    def encode(self) -> str:
        raw = orjson.dumps([self.t, self.score, self.lead_id, self.fit, self.sign, self.key,
                            self.half_life])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """BadCursor when `text` is not a cursor this API gave."""
        try:
            t, score, lead_id, fit, sign, key, half_life = orjson.loads(
                base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(float(t), float(score), str(lead_id), float(fit), int(sign),
                         float(key), float(half_life))
        except (ValueError, TypeError) as exc:
            raise BadCursor("not a cursor of this listing") from exc
        numbers = (cursor.t, cursor.score, cursor.fit, cursor.key, cursor.half_life)
        if not all(math.isfinite(x) for x in numbers) or cursor.half_life <= 0 \
                or cursor.sign not in (-1, 0, 1):
            raise BadCursor("not a cursor of this listing")
        return cursor

    def start(self, fit: float) -> tuple[int, float, str | None]:
        """Where the next page starts in the group of leads with this `fit`: `(sign, key, lead
        id)` to continue below, exclusive; in another group than the last lead's the lead id is
        None and the bound inclusive (a lead there with the same score is sorted out by
        `after`)."""
        if fit == self.fit:
            return self.sign, self.key, self.lead_id
        sign, key = bound(self.score, fit, self.half_life, self.t)
        return sign, key + 1e-9, None

    def after(self, score: float, lead_id: str, rank: Rank) -> bool:
        """Whether a lead with this score at `t` (and rank) comes after the cursor."""
        return order(score, lead_id, rank) < (self.score, self.fit, self.sign, self.key,
                                              self.lead_id)


def order(score: float, lead_id: str, rank: Rank) -> tuple[float, float, int, float, str]:
    """What the listing sorts by, descending: the score at `t`, then the index's own order
    (fit, sign, key, lead id), so that two leads whose scores are equal to the last digit
    (engagement long faded to nothing) come in the order the index pages them."""
    return score, rank.fit, rank.sign, rank.key, lead_id


def page(candidates: list[tuple[str, Rank]], t: float, limit: int,
         cursor: Cursor | None) -> tuple[list[tuple[str, float, Rank]], Cursor | None]:
    """The page of (lead id, score at `t`, rank) from the fit groups' candidates, best first, and
    the cursor of the next page (None: this was the last)."""
    scored = [(rank.score(t), lead_id, rank) for lead_id, rank in candidates]
    if cursor is not None:
        scored = [s for s in scored if cursor.after(*s)]
    scored.sort(key=lambda s: order(*s), reverse=True)
    rows = [(lead_id, score, rank) for score, lead_id, rank in scored[:limit]]
    if len(scored) <= limit:
        return rows, None
    lead_id, score, rank = rows[-1]
    return rows, Cursor(t, score, lead_id, rank.fit, rank.sign, rank.key, rank.half_life)
