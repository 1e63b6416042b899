"""Dispatch's use cases, one handler each: record the commands of `nurture.dispatch.v1`, deliver
a channel's due messages, settle attempts a crash interrupted after their hand-off, apply the
suppressions and erasures read from `nurture.events.v1`. Each opens a unit of work
(service_layer/unit_of_work.py), which owns the transaction, the outbox rows and the relay
wake-up; no SQL and no Kafka here.

Exactly-once, step by step:
1. `record_commands` inserts a `pending` delivery per command (once per message id: a
   redelivered command changes nothing) and dead-letters malformed records, in one unit of
   work; the consumer commits Kafka offsets after it.
2. `deliver_due` claims due rows (locked against other replicas, then leased by moving
   `next_attempt_at`: the lease is the claim's fencing token), checks expiry and suppressions
   and renders; for each message it calls the provider, which records `sending` (attempt + 1)
   at its hand-off point (`Handover`, adapters/handoff.py: SMTP right before the message data,
   HTTP right before the request goes out), then records `sent`, a retry at `next_attempt_at`,
   or `failed` plus a dead letter. A failure before the hand-off is a retry like any other. Up
   to `concurrency` messages of a round are in flight at once; their `sending` / `sent` writes
   share transactions (adapters/status_writer.py) without delaying any message's own steps.
   Outcome events and dead letters go through the outbox, in the same transaction as the
   status. A failing provider only pushes its own rows into the future: other channels have
   their own loops.

The crash window: a process that dies before the hand-off leaves the row `pending` under its
lease: it is claimed again when the lease ends and sent, since the provider never saw it. One
that dies after the hand-off (the provider may or may not have the message) leaves it
`sending`; once it is older than the sending timeout, `recover_stale` settles it by the
channel's guarantee (`NURTURE_DISPATCH_GUARANTEE_<CHANNEL>`): at-least-once resends it with the
same idempotency key (`Message-ID`, `Idempotency-Key`, `webhook-id` = message id; by default
CRM tasks and webhooks), at-most-once marks it `failed` with reason `sent_unconfirmed` and
reports `message.failed`, so a human can check, instead of risking a duplicate (by default
email and SMS)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.records import RecordError, SendMessage
from schemas.vocabulary import ALL_CHANNELS, CHANNELS, ERASED
from services.common.clock import Clock, SystemClock
from services.common.kafka.deadletter import Origin, replayed
from services.common.kafka.topics import Topics
from services.common.observability.logging import lead_hash
from services.dispatch.adapters.channels import Channels, Composer, Prepared, send
from services.dispatch.adapters.handoff import Handover
from services.dispatch.domain.deliveries import Delivery, NewDelivery
from services.dispatch.domain.errors import DispatchError, HandoffRefused, ProviderUnavailable
from services.dispatch.domain.messages import triage
from services.dispatch.domain.outcomes import Result
from services.dispatch.domain.retry import RetryPolicy
from services.dispatch.domain.suppressions import Change
from services.dispatch.metrics import DispatchMetrics, dead_letter_reason
from services.dispatch.service_layer.records import (
    AMBIGUOUS_FAILURES,
    MALFORMED,
    UNCONFIRMED,
    Record,
    as_dispatch_error,
    dead_letter_record,
    fields,
    outcome_record,
)
from services.dispatch.service_layer.unit_of_work import (
    Sent,
    Start,
    Statuses,
    UnitOfWork,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)
Work = tuple[Delivery, SendMessage]


@dataclass
class Handlers:
    """The handlers and what they need (built by bootstrap.py)."""

    uow: UnitOfWorkFactory
    statuses: Statuses
    composer: Composer
    channels: Channels
    topics: Topics
    metrics: DispatchMetrics
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Clock = field(default_factory=SystemClock)
    jitter: Callable[[], float] = random.random
    # channels whose attempts interrupted after the hand-off are resent (at-least-once)
    resend_unconfirmed: frozenset[str] = frozenset({"crm_task", "webhook"})
    batch_size: int = 50
    lease: timedelta = timedelta(seconds=120)
    sending_timeout: timedelta = timedelta(seconds=300)
    concurrency: int = 16  # messages in flight per channel loop
    email_concurrency: int = 4  # at most the SMTP connections: none waits for one once `sending`
    wake: dict[str, asyncio.Event] = field(
        default_factory=lambda: {c: asyncio.Event() for c in CHANNELS})

    async def record_commands(self, records: Sequence[Record]) -> None:
        """Record a polled batch of commands as pending deliveries, in one unit of work."""
        now = self.clock.now()
        rows: list[NewDelivery] = []
        letters = []
        again: set[str] = set()  # message ids of commands replayed from their dead letters
        for record in records:
            try:
                cmd = SendMessage.from_bytes(record.value)
            except RecordError as exc:
                letters.append(dead_letter_record(self.topics, record.key, record.value, Origin(
                    record.topic, record.partition, record.offset), f"{MALFORMED}: {exc}", now))
                self.metrics.dead_letters.labels("malformed").inc()
                continue
            rows.append(NewDelivery(cmd.message_id, cmd.lead_id, cmd.channel,
                                    record.value or b"", record.topic, record.partition,
                                    record.offset))
            if replayed(record.headers):
                again.add(cmd.message_id)
        async with self.uow() as uow:
            fresh = await uow.deliveries.insert(rows=rows, now=now)
            # a replayed command whose message failed for good is tried again (after a fix);
            # one that was sent, or is still on its way, stays a duplicate
            fresh |= await uow.deliveries.retry_failed(
                rows=[r for r in rows if r.message_id in again - fresh], now=now,
                unconfirmed=UNCONFIRMED)
            uow.publish(*letters)
        self.metrics.duplicates.inc(len(rows) - len(fresh))
        for row in rows:
            if row.message_id in fresh:
                self.wake[row.channel].set()

    async def deliver_due(self, channel: str) -> int:
        """One round of a channel loop: claim due deliveries and attempt them; how many."""
        now = self.clock.now()
        work: list[Work] = []
        async with self.uow() as uow:
            claimed = await uow.deliveries.claim_due(channel=channel, now=now,
                                                     limit=self.batch_size,
                                                     lease_until=now + self.lease)
            suppressed = await uow.suppressions.for_leads(
                lead_ids=[d.lead_id for d in claimed])
            for d in claimed:
                item = await self._ready(uow, d, suppressed.get(d.lead_id, {}), now)
                if item is not None:
                    work.append(item)
        limit = asyncio.Semaphore(self.email_concurrency if channel == "email"
                                  else self.concurrency)

        async def attempt(item: Work) -> None:
            async with limit:  # composing in here overlaps its CPU with other messages' I/O
                message = await self._compose(*item, now)
                if message is not None:
                    await self._attempt(*item, message)

        results = await asyncio.gather(*(attempt(item) for item in work), return_exceptions=True)
        for (d, _), result in zip(work, results, strict=True):
            # a bug or the database: the row is `pending` under its lease (before the hand-off)
            # or `sending` (after it), and comes back or is recovered like after a crash
            if isinstance(result, Exception):
                log.error("delivery attempt crashed; it will be retried or recovered",
                          exc_info=result,
                          extra={"message_id": d.message_id, "lead_hash": lead_hash(d.lead_id)})
        return len(claimed)

    async def recover_stale(self, limit: int = 100) -> int:
        """Settle attempts interrupted after their hand-off by a crash (see the module
        docstring); how many."""
        now = self.clock.now()
        settled: list[tuple[Delivery, str]] = []  # and how: resent | failed
        async with self.uow() as uow:
            stale = await uow.deliveries.claim_stale_sending(before=now - self.sending_timeout,
                                                             limit=limit)
            for d in stale:
                how = await self._settle(uow, d, now)
                if how is not None:
                    settled.append((d, how))
        for d, how in settled:  # counted once committed
            self.metrics.unconfirmed.labels(d.channel, how).inc()
            log.warning("interrupted delivery settled", extra={
                "message_id": d.message_id, "lead_hash": lead_hash(d.lead_id),
                "channel": d.channel, "resent": how == "resent"})
            if how == "resent":
                self.wake[d.channel].set()
        return len(stale)

    async def apply_suppressions(self, changes: Sequence[Change], erased: Sequence[str],
                                 merged: Sequence[tuple[str, str]] = ()) -> int:
        """Record suppression changes, erasures and merges read from the events topic, in one
        unit of work, so a message already queued or waiting for a retry is not sent after the
        lead said stop (or was erased); how many changes. A merge (absorbing, absorbed) gives
        the absorbing lead every suppression of the absorbed one it lacks, but an erasure: a
        suppression on either side holds (docs/identity.md)."""
        if changes or erased or merged:
            async with self.uow() as uow:
                if changes:
                    await uow.suppressions.apply(changes=changes)
                for lead_id, absorbed in merged:
                    await self._merge_suppressions(uow, lead_id, absorbed)
                await uow.suppressions.erase(lead_ids=erased, now=self.clock.now())
        return len(changes)

    async def _merge_suppressions(self, uow: UnitOfWork, lead_id: str, absorbed: str) -> None:
        held = await uow.suppressions.for_leads(lead_ids=[lead_id, absorbed])
        mine = held.get(lead_id, {})
        for channel, reason in held.get(absorbed, {}).items():
            if channel not in mine and reason != ERASED:  # an erasure was of that id alone
                await uow.suppressions.suppress(lead_id=lead_id, channel=channel,
                                                reason=reason, at=self.clock.now())

    async def _ready(self, uow: UnitOfWork, d: Delivery, suppressions: dict[str, str],
                     now: datetime) -> Work | None:
        """The command to attempt, or None when it ends here (unreadable, expired, suppressed)."""
        try:
            cmd = SendMessage.from_bytes(d.payload)
        except RecordError as exc:  # stored commands were valid; a model change could bite
            await self._give_up(uow, d, None, DispatchError("malformed", str(exc)), now,
                                attempt=d.attempts + 1, label="malformed", handed_over=False)
            return None
        skip = triage(cmd, now=now, suppressions=suppressions)
        if skip is None:
            return d, cmd
        told = await uow.deliveries.finish(message_id=d.message_id, status=skip.status,
                                           now=now, error=skip.reason,
                                           held=("pending", d.lease))
        if told and suppressions.get(ALL_CHANNELS) != ERASED:  # erased: nobody is told
            result = Result("suppressed", d.attempts + 1, reason=skip.reason)
            uow.publish(outcome_record(self.topics, cmd, result, now))
        self.metrics.messages.labels(cmd.program_id, cmd.step_id, d.channel, skip.status).inc()
        log.info("message not sent", extra={**fields(cmd), "reason": skip.reason,
                                            "outcome": skip.status})
        return None

    async def _compose(self, d: Delivery, cmd: SendMessage, now: datetime) -> Prepared | None:
        """The message to hand to the provider, or None when it cannot be built (template,
        address, channel not configured): failed and dead-lettered."""
        try:
            return self.composer.prepare(cmd, channels=self.channels, now=now)
        except DispatchError as exc:
            async with self.uow() as uow:
                await self._give_up(uow, d, cmd, exc, now, attempt=d.attempts + 1,
                                    label=dead_letter_reason(exc.reason), handed_over=False)
            log.warning("message failed", extra={**fields(cmd), "reason": exc.reason})
            return None

    async def _attempt(self, d: Delivery, cmd: SendMessage, message: Prepared) -> None:
        """The provider call, which commits `sending` at its hand-off point, then the outcome
        (committed)."""
        assert d.lease is not None  # claimed rows carry their claim's lease
        handover = Handover(self.statuses, Start(d.message_id, d.lease))
        started = time.monotonic()
        try:
            provider_id = await send(self.channels, message, now=self.clock.now(),
                                     handoff=handover)
        except HandoffRefused:  # another replica took it over, or it was erased meanwhile
            log.info("delivery no longer ours at the hand-off: nothing sent", extra=fields(cmd))
            return
        except Exception as exc:  # any failure is retried or given up, within the budget
            self.metrics.duration.labels(d.channel).observe(time.monotonic() - started)
            await self._failed(d, cmd, as_dispatch_error(exc, cmd),
                               handover.attempt or d.attempts + 1,
                               handed_over=handover.attempt is not None)
            return
        self.metrics.duration.labels(d.channel).observe(time.monotonic() - started)
        if handover.attempt is None:  # an adapter bug: the crash window was not guarded
            log.error("provider call returned without reaching its hand-off point",
                      extra=fields(cmd))
        attempt = handover.attempt or d.attempts + 1
        result = Result("sent", attempt, provider_message_id=provider_id or None)
        event = outcome_record(self.topics, cmd, result, self.clock.now())
        now = await self.statuses.sent(Sent(d.message_id, provider_id or None, event))
        self.metrics.messages.labels(cmd.program_id, cmd.step_id, d.channel, "sent").inc()
        if cmd.event_time is not None:
            self.metrics.end_to_end.labels(d.channel).observe(
                max(0.0, (now - cmd.event_time).total_seconds()))
        log.info("message sent", extra={**fields(cmd), "attempt": attempt})

    async def _failed(self, d: Delivery, cmd: SendMessage, exc: DispatchError,
                      attempt: int, *, handed_over: bool) -> None:
        """A failed attempt: retried later, or given up. The row is `sending` if the attempt
        got past its hand-off, else still `pending` under this loop's lease."""
        now = self.clock.now()
        hint = exc.retry_after if isinstance(exc, ProviderUnavailable) else None
        at = self.policy.next_attempt(attempt, now=now, jitter=self.jitter(), retry_after=hint) \
            if exc.transient else None
        async with self.uow() as uow:
            if at is None:
                label = "exhausted" if exc.transient else dead_letter_reason(exc.reason)
                await self._give_up(uow, d, cmd, exc, now, attempt=attempt, label=label,
                                    handed_over=handed_over)
            elif await uow.deliveries.reschedule(
                    message_id=d.message_id, at=at, now=now,
                    error=f"{exc.reason}: {exc.detail}", attempts=attempt,
                    status="sending" if handed_over else "pending",
                    lease=None if handed_over else d.lease):
                result = Result("failed", attempt, reason=exc.reason, retryable=True)
                uow.publish(outcome_record(self.topics, cmd, result, now))
            else:  # erased during the attempt, or taken over: no retry, nobody is told
                at = None
        if at is not None:
            self.metrics.retries.labels(d.channel).inc()
        log.warning("delivery attempt failed", extra={
            **fields(cmd), "attempt": attempt, "reason": exc.reason, "detail": exc.detail,
            "retry_at": at.isoformat() if at else None})

    async def _give_up(self, uow: UnitOfWork, d: Delivery, cmd: SendMessage | None,
                       exc: DispatchError, now: datetime, *, attempt: int, label: str,
                       handed_over: bool) -> None:
        """Failed for good: the status, a dead letter with the original command, and a
        `message.failed` event (when the command could be read) — if this attempt still holds
        the row (`sending` after its hand-off, else `pending` under its claim) and its lead is
        not erased; otherwise nothing is told."""
        error = f"{exc.reason}: {exc.detail}" if exc.detail != exc.reason else exc.reason
        if label == "exhausted":
            error = f"gave up after {attempt} attempts; last: {error}"
            if handed_over and exc.reason in AMBIGUOUS_FAILURES:  # the provider may have it
                error = f"{UNCONFIRMED}: {error}"  # so a replay never sends it again
        held = ("sending", None) if handed_over else ("pending", d.lease)
        if not await uow.deliveries.finish(message_id=d.message_id, status="failed", now=now,
                                           error=error, attempts=attempt, held=held):
            return
        uow.publish(dead_letter_record(self.topics, d.lead_id.encode(), d.payload, Origin(
            d.origin_topic, d.origin_partition, d.origin_offset), error, now))
        if cmd is not None:
            uow.publish(outcome_record(self.topics, cmd,
                                       Result("failed", attempt, reason=exc.reason), now))
        self.metrics.messages.labels(cmd.program_id if cmd else "other",
                                     cmd.step_id if cmd else "other", d.channel, "failed").inc()
        self.metrics.dead_letters.labels(label).inc()

    async def _settle(self, uow: UnitOfWork, d: Delivery, now: datetime) -> str | None:
        """One stale `sending` delivery, by its channel's guarantee: `resent`, `failed`, or
        None when it was no longer ours to settle."""
        if d.channel in self.resend_unconfirmed:
            resent = await uow.deliveries.reschedule(
                message_id=d.message_id, at=now, now=now, status="sending",
                error="interrupted after the hand-off; resent with its idempotency key")
            return "resent" if resent else None
        if not await uow.deliveries.finish(
                message_id=d.message_id, status="failed", now=now,
                error=f"{UNCONFIRMED}: interrupted after the hand-off to the provider; not "
                      "resent to avoid a duplicate"):
            return None
        try:
            cmd = SendMessage.from_bytes(d.payload)
        except RecordError:
            return "failed"
        result = Result("failed", d.attempts, reason=UNCONFIRMED)
        uow.publish(outcome_record(self.topics, cmd, result, now))
        self.metrics.messages.labels(cmd.program_id, cmd.step_id, d.channel,
                                     "unconfirmed").inc()
        return "failed"
