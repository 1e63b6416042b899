"""Dispatch's Prometheus metrics. Labels are bounded: channels and outcomes are fixed sets,
dead-letter reasons are mapped onto a fixed set (`dead_letter_reason`), program and step ids
come from commands the orchestrator built from its program files."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from schemas.vocabulary import CHANNELS
from services.common.db.retention import pruned_rows
from services.common.observability.metrics import (
    END_TO_END_BUCKETS_SECONDS,
    LATENCY_BUCKETS_SECONDS,
    ConsumerLag,
    OutboxBacklog,
)
from services.dispatch.adapters.retention import RULES

DEAD_LETTER_REASONS = frozenset({"malformed", "template_error", "invalid_address",
                                 "channel_not_configured", "rejected", "exhausted"})


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "nurture_dispatch_messages_total",
            "Messages by program, step, channel and final outcome (sent, failed, suppressed, "
            "expired, unconfirmed).", ["program", "step", "channel", "outcome"],
            registry=registry)
        self.end_to_end = Histogram(
            "nurture_end_to_end_latency_seconds",
            "From the time of the event that caused a message to the provider accepting it, "
            "by channel (messages a lead's event triggered at once; not timed steps).",
            ["channel"], buckets=END_TO_END_BUCKETS_SECONDS, registry=registry)
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
        self.unconfirmed = Counter(
            "nurture_dispatch_unconfirmed_attempts_total",
            "Attempts interrupted after their hand-off to the provider (it may or may not have "
            "the message), by channel and how they were settled by the channel's guarantee: "
            "resent (at-least-once) or failed as sent_unconfirmed (at-most-once).",
            ["channel", "resolution"], registry=registry)
        self.duplicates = Counter(
            "nurture_dispatch_duplicate_commands_total",
            "Commands whose message id was already known (redeliveries), ignored.",
            registry=registry)
        self.published = Counter(
            "nurture_dispatch_outbox_published_total",
            "Outbox records (outcome events, dead letters) published to Kafka.",
            registry=registry)
        self.outbox = OutboxBacklog(registry)
        self.lag = ConsumerLag(registry)
        self.pruned = pruned_rows(registry, "dispatch", RULES)
        # Every known label value exists at 0 from the start: a counter series born at 1 has no
        # increase() for its first event (the NurtureDeadLetters alert would miss it).
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for channel in CHANNELS:
            self.retries.labels(channel)
            for resolution in ("resent", "failed"):
                self.unconfirmed.labels(channel, resolution)


def dead_letter_reason(reason: str) -> str:
    """`reason` if it is one of the known dead-letter reasons, else `rejected`."""
    return reason if reason in DEAD_LETTER_REASONS else "rejected"
