"""Prometheus helpers. Each app owns a `CollectorRegistry` (no module-level globals), so tests
and several apps in one process do not collide. Names: `nurture_` prefix, base units, `_total`.
Metrics every consumer shares (consumer lag, outbox backlog) are defined here once, so the same
name means the same thing in every service (the scrape's `job` label tells them apart).

A service's registry (`service_registry`) also carries what an operator expects of any process:
the standard `process_*` and `python_*` collectors and `nurture_build_info{version, revision}`.
No `_created` series: they double the series count and no dashboard or alert reads them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata

from aiokafka import AIOKafkaConsumer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # type: ignore[no-untyped-call]

REVISION_VARIABLE = "NURTURE_BUILD_REVISION"
"""The source revision the running code was built from (the image sets it from its `REVISION`
build argument); `unknown` when unset, as in a development checkout."""

# Latencies from sub-millisecond produce acks to multi-second broker stalls.
LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
# Event to message: milliseconds on a quiet stack, seconds when a lead acts under load, up to
# hours when a message waited (quiet hours).
END_TO_END_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 6 * 3600.0, 86400.0,
)


def new_registry() -> CollectorRegistry:
    """An empty registry (tests, and the base of `service_registry`)."""
    return CollectorRegistry(auto_describe=True)


def service_registry() -> CollectorRegistry:
    """The registry a service exposes on `/metrics`: the process and Python collectors and
    `nurture_build_info`; the service's metric classes add the rest."""
    registry = new_registry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    version, revision = build()
    Gauge("nurture_build_info", "Always 1; the labels say which build is running.",
          ["version", "revision"], registry=registry).labels(version, revision).set(1)
    return registry


def build() -> tuple[str, str]:
    """The installed package's version and the revision it was built from."""
    try:
        version = metadata.version("nurture")
    except metadata.PackageNotFoundError:  # run from a tree that was never installed
        version = "unknown"
    return version, os.environ.get(REVISION_VARIABLE, "").strip() or "unknown"


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of `registry` and its content type, for a `/metrics` handler."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class ConsumerLag:
    """`nurture_consumer_lag_records{group, topic}`: records on the partitions a consumer owns
    that it has not read yet (the partitions' end offsets, asked of the broker at each refresh,
    minus its position). Not the consumer's `highwater()`: that only moves when a fetch returns,
    so the lag of a stuck consumer would stay flat while records pile up."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "nurture_consumer_lag_records",
            "Records not yet consumed on this replica's partitions, by group and topic.",
            ["group", "topic"], registry=registry)
        self._topics: dict[str, set[str]] = {}  # by group: topics a value was set for

    async def update(self, consumer: AIOKafkaConsumer, group: str) -> int:
        """Refresh from the broker's end offsets; returns 0 so a `loop` waits its interval."""
        mine = list(consumer.assignment())
        ends = await consumer.end_offsets(mine) if mine else {}
        totals: dict[str, int] = dict.fromkeys({tp.topic for tp in mine}, 0)
        for tp, end in ends.items():
            position = await consumer.position(tp)
            totals[tp.topic] += max(0, end - position)
        self.set(group, totals)
        return 0

    def set(self, group: str, totals: Mapping[str, int]) -> None:
        """Set each topic's lag; a topic this replica no longer has a partition of reads 0."""
        seen = self._topics.setdefault(group, set())
        for topic in seen - totals.keys():
            self.gauge.labels(group, topic).set(0)
        for topic, lag in totals.items():
            self.gauge.labels(group, topic).set(lag)
        seen.update(totals)


class OutboxBacklog:
    """`nurture_outbox_pending_records` and `nurture_outbox_parked_records`, refreshed from the
    service's outbox table by its periodic gauge loop."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pending = Gauge("nurture_outbox_pending_records",
                             "Outbox rows waiting to be published to Kafka.", registry=registry)
        self.parked = Gauge("nurture_outbox_parked_records",
                            "Outbox rows Kafka refused for good (parked for an operator).",
                            registry=registry)

    def set(self, counts: tuple[int, int]) -> None:
        self.pending.set(counts[0])
        self.parked.set(counts[1])
