"""Prometheus helpers. Each app owns a `CollectorRegistry` (no module-level globals), so tests
and several apps in one process do not collide. Names: `nurture_` prefix, base units, `_total`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# Latencies from sub-millisecond produce acks to multi-second broker stalls.
LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type, for a `/metrics` handler."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
