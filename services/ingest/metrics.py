"""ingest's Prometheus metrics (labels are bounded: route, status code, event type, reason)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas import EVENT_TYPES
from services.common.observability.metrics import LATENCY_BUCKETS_SECONDS


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Histogram(
            "nurture_ingest_request_duration_seconds",
            "HTTP request handling time, by route and status code.",
            ["route", "status"], buckets=LATENCY_BUCKETS_SECONDS, registry=registry)
        self.accepted = Counter(
            "nurture_ingest_events_accepted_total",
            "Events acknowledged by Kafka and answered 2xx, by event type.",
            ["type"], registry=registry)
        self.rejected = Counter(
            "nurture_ingest_events_rejected_total",
            "Events refused, by reason (invalid, unauthorized, forbidden_source, too_large, "
            "unsupported_media_type, bad_request, unavailable).",
            ["reason"], registry=registry)
        self.repeated = Counter(
            "nurture_ingest_events_repeated_total",
            "Segment calls answered as accepted but not published again: their messageId was "
            "published lately by this process (an SDK's retry).", registry=registry)
        self.produce = Histogram(
            "nurture_ingest_produce_duration_seconds",
            "Time from handing a request's records to the producer to the broker's last ack.",
            buckets=LATENCY_BUCKETS_SECONDS, registry=registry)
        self.kafka_connected = Gauge(
            "nurture_ingest_kafka_connected",
            "1 when the producer is connected to Kafka.", registry=registry)
        # known label values at 0 from the start, so the first event of each has an increase()
        for reason in (*REASONS.values(), "other"):
            self.rejected.labels(reason)
        for event_type in EVENT_TYPES:
            self.accepted.labels(event_type)


REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden_source", 413: "too_large",
           415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
           503: "unavailable"}
