"""Dispatch's Prometheus metrics. Labels are bounded: channels and outcomes are fixed sets,
dead-letter reasons are mapped onto a fixed set (`dead_letter_reason`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS_SECONDS

DEAD_LETTER_REASONS = frozenset({"malformed", "template_error", "invalid_address",
                                 "channel_not_configured", "rejected", "exhausted"})


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "nurture_dispatch_messages_total",
            "Messages by channel and final outcome (sent, failed, suppressed, expired, "
            "unconfirmed).", ["channel", "outcome"], registry=registry)
        self.duration = Histogram(
            "nurture_dispatch_delivery_duration_seconds",
            "Time of one provider call (SMTP transaction, HTTP request), by channel.",
            ["channel"], buckets=LATENCY_BUCKETS_SECONDS, registry=registry)
        self.retries = Counter(
            "nurture_dispatch_retries_total",
            "Failed attempts that were scheduled for another try, by channel.", ["channel"],
            registry=registry)
        self.dead_letters = Counter(
            "nurture_dispatch_dead_letters_total",
            "Commands sent to the dead-letter topic, by reason.", ["reason"], registry=registry)
        self.duplicates = Counter(
            "nurture_dispatch_duplicate_commands_total",
            "Commands whose message id was already known (redeliveries), ignored.",
            registry=registry)
        self.published = Counter(
            "nurture_dispatch_outbox_published_total",
            "Outbox records (outcome events, dead letters) published to Kafka.",
            registry=registry)


def dead_letter_reason(reason: str) -> str:
    """`reason` if it is one of the known dead-letter reasons, else `rejected`."""
    return reason if reason in DEAD_LETTER_REASONS else "rejected"
