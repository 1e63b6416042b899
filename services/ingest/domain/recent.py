"""Event identities published lately (pure; time comes in as an argument): a Segment call sent
again within the window, as SDKs do when an answer was lost, is answered as accepted and not
published twice. Per process and bounded: with several ingest replicas, or past the window,
the copy is published and the consumers' dedupe on `source` + `id` makes it a no-op."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class RecentIds:
    """(source, id) pairs seen in the last `window` seconds, at most `limit` of them (the oldest
    forgotten first). `window` 0 remembers nothing."""

    def __init__(self, *, window: float, limit: int = 100_000) -> None:
        self.window, self.limit = window, limit
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()  # oldest first

    def seen(self, source: str, event_id: str, *, now: float) -> bool:
        self._expire(now)
        return (source, event_id) in self._seen

    def add(self, pairs: Iterable[tuple[str, str]], *, now: float) -> None:
        """Remember `pairs` as published at `now`."""
        if self.window <= 0:
            return
        for pair in pairs:
            self._seen.pop(pair, None)
            self._seen[pair] = now
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._seen:
            pair, at = next(iter(self._seen.items()))
            if now - at < self.window:
                return
            del self._seen[pair]
