"""Per-API-key rate limiting: one token bucket per key name (pure; time comes in as an argument).

A bucket holds at most `burst` tokens and refills at `rate` tokens per second; a request costs
one token. A refused request learns how long until a token is back (the `Retry-After`). State is
per process: with N ingest replicas a key gets at most N times the rate, which is what a limit
meant to protect the service (not to bill) needs."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by API-key name. `rate` <= 0 turns limiting off."""

    def __init__(self, *, rate: float, burst: int, max_keys: int = 10_000) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, *, now: float) -> float:
        """0.0 when `key` may make a request now (and one token is spent); otherwise the seconds
        until it may (nothing is spent)."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.pop(key, None)  # re-inserted below: the dict is oldest-used first
        if bucket is None:
            if len(self._buckets) >= self.max_keys:  # forget the least recently used tenth
                for stale in list(self._buckets)[: max(1, self.max_keys // 10)]:
                    del self._buckets[stale]
            bucket = _Bucket(float(self.burst), now)
        self._buckets[key] = bucket
        elapsed = max(0.0, now - bucket.updated)  # a clock stepping back adds nothing
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after(wait: float) -> str:
    """The `Retry-After` header value for a wait: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))


def client_group(address: str) -> str:
    """Whose bucket a client address uses: the address itself, an IPv6 one's /64 (one
    subscriber's network, which holds more addresses than any limit could count)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
