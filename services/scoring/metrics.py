"""scoring's Prometheus metrics (bounded labels: event type, outcome, model, threshold)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas import EVENT_TYPES
from services.common.observability.metrics import LATENCY_BUCKETS_SECONDS, ConsumerLag

OUTCOMES = ("scored", "duplicate", "late", "dead_lettered")


class ScoringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "nurture_scoring_events_total",
            "Events consumed, by type and outcome (scored, duplicate, late, dead_lettered).",
            ["type", "outcome"], registry=registry)
        self.crossings = Counter(
            "nurture_scoring_threshold_crossings_total",
            "Threshold crossings, by model, threshold and direction (up, down).",
            ["model", "threshold", "direction"], registry=registry)
        self.latency = Histogram(
            "nurture_scoring_processing_duration_seconds",
            "Time to score one event and hand its output to the producer.",
            buckets=LATENCY_BUCKETS_SECONDS, registry=registry)
        self.leads = Gauge(
            "nurture_scoring_table_leads",
            "Leads held in this worker's state table (its assigned partitions).",
            registry=registry)
        self.reread = Counter(
            "nurture_scoring_skipped_records_reread_total",
            "Input records the faust stream skipped during a rebalance and the worker re-read "
            "(services/scoring/adapters/faust_app.py); non-zero means the guard prevented a loss.",
            registry=registry)
        self.lag = ConsumerLag(registry)
        # known label values at 0 from the start, so the first event of each has an increase()
        self._counted: dict[tuple[str, str], Counter] = {
            (event_type, outcome): self.events.labels(event_type, outcome)
            for event_type in (*EVENT_TYPES, "other") for outcome in OUTCOMES}

    def counted(self, event_type: str, outcome: str) -> None:
        """One more event of `event_type` (one of EVENT_TYPES, else counted as "other") with
        `outcome`; the labelled counters are looked up once (once per event, `labels` cost a
        few percent of the worker's CPU)."""
        key = (event_type if event_type in EVENT_TYPES else "other", outcome)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.events.labels(*key)
        counter.inc()
