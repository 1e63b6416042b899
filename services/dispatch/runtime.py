"""Dispatch's moving parts (I/O): the command consumer, one delivery loop per channel, the
recovery of interrupted attempts and the outbox relay.

Exactly-once, step by step:
1. The consumer inserts a `pending` delivery per command (`ON CONFLICT DO NOTHING` on the
   message id: a redelivered command changes nothing) and dead-letters malformed records, in one
   transaction; Kafka offsets are committed after it.
2. A channel loop claims due rows (`FOR UPDATE SKIP LOCKED`, then leased by moving
   `next_attempt_at`), checks expiry and suppressions and renders; for each message it calls
   the provider, which records `sending` (attempt + 1) at its hand-off point
   (adapters/handoff.py: SMTP right before DATA, HTTP right before the request goes out), then
   records `sent`, a retry at `next_attempt_at`, or `failed` plus a dead letter. A failure
   before the hand-off is a retry like any other. Up to `concurrency` messages of a round
   are in flight at once; their `sending` / `sent` writes share transactions (statuswriter.py)
   without delaying any message's own steps. Outcome events and dead letters go through
   the outbox, in the same transaction as the status, and a relay publishes them. A failing
   provider only pushes its own rows into the future: other channels have their own loops.

The crash window: a process that dies before the hand-off leaves the row `pending` under its
lease: it is claimed again when the lease ends and sent, since the provider never saw it. One
that dies after the hand-off (the provider may or may not have the message) leaves it
`sending`; once it is older than the sending timeout, the recovery loop settles it by the
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

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.clock import Clock, SystemClock
from services.common.db import outbox
from services.common.db.outbox import Outgoing
from services.common.kafka.deadletter import Origin, dead_letter, replayed
from services.common.kafka.topics import Topics
from services.common.observability.logging import lead_hash
from services.dispatch.adapters import repository as repo
from services.dispatch.adapters import tables
from services.dispatch.delivery import Channels, Composer, Prepared, send
from services.dispatch.domain.command import (
    CHANNELS,
    MalformedCommand,
    SendMessage,
    parse_command,
)
from services.dispatch.domain.errors import DispatchError, HandoffRefused, ProviderUnavailable
from services.dispatch.domain.messages import ALL_CHANNELS, triage
from services.dispatch.domain.outcomes import Result, outcome_event
from services.dispatch.domain.retry import RetryPolicy
from services.dispatch.metrics import DispatchMetrics, dead_letter_reason
from services.dispatch.statuswriter import Handover, Sent, Start, StatusWriter

log = logging.getLogger(__name__)
CONSUMER = "nurture-dispatch"
EVENT_HEADERS = [("content-type", "application/cloudevents+json; charset=utf-8")]
UNCONFIRMED = "sent_unconfirmed"
# failures after the hand-off that leave open whether the provider took the message
AMBIGUOUS_FAILURES = frozenset({"timeout", "connection_failed", "attempt_crashed"})
Work = tuple[repo.Delivery, SendMessage]


@dataclass
class Dispatcher:
    """Everything the loops share."""

    engine: AsyncEngine
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
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    statuses: StatusWriter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # the `sending` / `sent` writes of the messages in flight share transactions
        self.statuses = StatusWriter(self.engine, self.clock, self._event)

    async def handle_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Record a polled batch of commands as pending deliveries, in one transaction."""
        now = self.clock.now()
        rows: list[repo.NewDelivery] = []
        letters: list[Outgoing] = []
        again: set[str] = set()  # message ids of commands replayed from their dead letters
        for record in records:
            try:
                cmd = parse_command(record.value)
            except MalformedCommand as exc:
                letters.append(self._letter(record.key, record.value, Origin(
                    record.topic, record.partition, record.offset), str(exc), now))
                self.metrics.dead_letters.labels("malformed").inc()
                continue
            rows.append(repo.NewDelivery(cmd.message_id, cmd.lead_id, cmd.channel,
                                         record.value or b"", record.topic, record.partition,
                                         record.offset))
            if replayed(record.headers):
                again.add(cmd.message_id)
        async with self.engine.begin() as conn:
            fresh = await repo.insert_deliveries(conn, rows=rows, now=now)
            # a replayed command whose message failed for good is tried again (after a fix);
            # one that was sent, or is still on its way, stays a duplicate
            fresh |= await repo.retry_failed(
                conn, rows=[r for r in rows if r.message_id in again - fresh], now=now,
                unconfirmed=UNCONFIRMED)
            await repo.enqueue(conn, records=letters, now=now)
        self.metrics.duplicates.inc(len(rows) - len(fresh))
        for row in rows:
            if row.message_id in fresh:
                self.wake[row.channel].set()
        if letters:
            self.outbox_ready.set()

    async def deliver_due(self, channel: str) -> int:
        """One round of a channel loop: claim due deliveries and attempt them; how many."""
        now = self.clock.now()
        work: list[Work] = []
        async with self.engine.begin() as conn:
            claimed = await repo.claim_due(conn, channel=channel, now=now, limit=self.batch_size,
                                           lease_until=now + self.lease)
            suppressed = await repo.suppressions_for(conn, lead_ids=[d.lead_id for d in claimed])
            for d in claimed:
                item = await self._ready(conn, d, suppressed.get(d.lead_id, {}), now)
                if item is not None:
                    work.append(item)
        if len(work) < len(claimed):
            self.outbox_ready.set()
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

    async def _ready(self, conn: AsyncConnection, d: repo.Delivery,
                     suppressions: dict[str, str], now: datetime) -> Work | None:
        """The command to attempt, or None when it ends here (unreadable, expired, suppressed)."""
        try:
            cmd = parse_command(d.payload)
        except MalformedCommand as exc:  # stored commands were valid; a model change could bite
            await self._give_up(conn, d, None, DispatchError("malformed", str(exc)), now,
                                attempt=d.attempts + 1, label="malformed", handed_over=False)
            return None
        skip = triage(cmd, now=now, suppressions=suppressions)
        if skip is not None:
            told = await repo.finish(conn, message_id=d.message_id, status=skip.status, now=now,
                                     error=skip.reason, held=("pending", d.lease))
            if told and suppressions.get(ALL_CHANNELS) != repo.ERASED:  # erased: nobody is told
                result = Result("suppressed", d.attempts + 1, reason=skip.reason)
                await repo.enqueue(conn, records=[self._event(cmd, result, now)], now=now)
            self.metrics.messages.labels(cmd.program_id, cmd.step_id, d.channel,
                                         skip.status).inc()
            log.info("message not sent", extra={**_fields(cmd), "reason": skip.reason,
                                                "outcome": skip.status})
            return None
        return d, cmd

    async def _compose(self, d: repo.Delivery, cmd: SendMessage,
                       now: datetime) -> Prepared | None:
        """The message to hand to the provider, or None when it cannot be built (template,
        address, channel not configured): failed and dead-lettered."""
        try:
            return self.composer.prepare(cmd, channels=self.channels, now=now)
        except DispatchError as exc:
            async with self.engine.begin() as conn:
                await self._give_up(conn, d, cmd, exc, now, attempt=d.attempts + 1,
                                    label=dead_letter_reason(exc.reason), handed_over=False)
            log.warning("message failed", extra={**_fields(cmd), "reason": exc.reason})
            self.outbox_ready.set()
            return None

    async def _attempt(self, d: repo.Delivery, cmd: SendMessage, message: Prepared) -> None:
        """The provider call, which commits `sending` at its hand-off point, then the outcome
        (committed)."""
        assert d.lease is not None  # claimed rows carry their claim's lease
        handover = Handover(self.statuses, Start(d.message_id, d.lease))
        started = time.monotonic()
        try:
            provider_id = await send(self.channels, message, now=self.clock.now(),
                                     handoff=handover)
        except HandoffRefused:  # another replica took it over, or it was erased meanwhile
            log.info("delivery no longer ours at the hand-off: nothing sent", extra=_fields(cmd))
            return
        except Exception as exc:  # any failure is retried or given up, within the budget
            self.metrics.duration.labels(d.channel).observe(time.monotonic() - started)
            await self._failed(d, cmd, _as_dispatch_error(exc, cmd),
                               handover.attempt or d.attempts + 1,
                               handed_over=handover.attempt is not None)
            return
        self.metrics.duration.labels(d.channel).observe(time.monotonic() - started)
        if handover.attempt is None:  # an adapter bug: the crash window was not guarded
            log.error("provider call returned without reaching its hand-off point",
                      extra=_fields(cmd))
        attempt = handover.attempt or d.attempts + 1
        now = await self.statuses.sent(Sent(d.message_id, cmd, attempt, provider_id or None))
        self.metrics.messages.labels(cmd.program_id, cmd.step_id, d.channel, "sent").inc()
        if cmd.event_time is not None:
            self.metrics.end_to_end.labels(d.channel).observe(
                max(0.0, (now - cmd.event_time).total_seconds()))
        log.info("message sent", extra={**_fields(cmd), "attempt": attempt})
        self.outbox_ready.set()

    async def _failed(self, d: repo.Delivery, cmd: SendMessage, exc: DispatchError,
                      attempt: int, *, handed_over: bool) -> None:
        """A failed attempt: retried later, or given up. The row is `sending` if the attempt
        got past its hand-off, else still `pending` under this loop's lease."""
        now = self.clock.now()
        hint = exc.retry_after if isinstance(exc, ProviderUnavailable) else None
        at = self.policy.next_attempt(attempt, now=now, jitter=self.jitter(), retry_after=hint) \
            if exc.transient else None
        async with self.engine.begin() as conn:
            if at is None:
                label = "exhausted" if exc.transient else dead_letter_reason(exc.reason)
                await self._give_up(conn, d, cmd, exc, now, attempt=attempt, label=label,
                                    handed_over=handed_over)
            else:
                if await repo.reschedule(conn, message_id=d.message_id, at=at, now=now,
                                         error=f"{exc.reason}: {exc.detail}", attempts=attempt,
                                         status="sending" if handed_over else "pending",
                                         lease=None if handed_over else d.lease):
                    result = Result("failed", attempt, reason=exc.reason, retryable=True)
                    await repo.enqueue(conn, records=[self._event(cmd, result, now)], now=now)
                else:  # erased during the attempt, or taken over: no retry, nobody is told
                    at = None
        if at is not None:
            self.metrics.retries.labels(d.channel).inc()
        log.warning("delivery attempt failed", extra={
            **_fields(cmd), "attempt": attempt, "reason": exc.reason, "detail": exc.detail,
            "retry_at": at.isoformat() if at else None})
        self.outbox_ready.set()

    async def _give_up(self, conn: AsyncConnection, d: repo.Delivery, cmd: SendMessage | None,
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
        if not await repo.finish(conn, message_id=d.message_id, status="failed", now=now,
                                 error=error, attempts=attempt, held=held):
            return
        records = [self._letter(d.lead_id.encode(), d.payload, Origin(
            d.origin_topic, d.origin_partition, d.origin_offset), error, now)]
        if cmd is not None:
            records.append(self._event(cmd, Result("failed", attempt, reason=exc.reason), now))
        await repo.enqueue(conn, records=records, now=now)
        self.metrics.messages.labels(cmd.program_id if cmd else "other",
                                     cmd.step_id if cmd else "other", d.channel, "failed").inc()
        self.metrics.dead_letters.labels(label).inc()

    async def recover_stale(self, limit: int = 100) -> int:
        """Settle attempts interrupted after their hand-off by a crash (see the module
        docstring); how many."""
        now = self.clock.now()
        settled: list[tuple[repo.Delivery, str]] = []  # and how: resent | failed
        async with self.engine.begin() as conn:
            stale = await repo.claim_stale_sending(conn, before=now - self.sending_timeout,
                                                   limit=limit)
            for d in stale:
                if d.channel in self.resend_unconfirmed:
                    if await repo.reschedule(conn, message_id=d.message_id, at=now, now=now,
                                             error="interrupted after the hand-off; resent "
                                                   "with its idempotency key", status="sending"):
                        settled.append((d, "resent"))
                    continue
                if await repo.finish(conn, message_id=d.message_id, status="failed", now=now,
                                     error=f"{UNCONFIRMED}: interrupted after the hand-off to "
                                           "the provider; not resent to avoid a duplicate"):
                    settled.append((d, "failed"))
                    await self._report_unconfirmed(conn, d, now)
        for d, how in settled:  # counted once committed
            self.metrics.unconfirmed.labels(d.channel, how).inc()
            log.warning("interrupted delivery settled", extra={
                "message_id": d.message_id, "lead_hash": lead_hash(d.lead_id),
                "channel": d.channel, "resent": how == "resent"})
            if how == "resent":
                self.wake[d.channel].set()
        self.outbox_ready.set()
        return len(stale)

    async def _report_unconfirmed(self, conn: AsyncConnection, d: repo.Delivery,
                                  now: datetime) -> None:
        try:
            cmd = parse_command(d.payload)
        except MalformedCommand:
            return
        result = Result("failed", d.attempts, reason=UNCONFIRMED)
        await repo.enqueue(conn, records=[self._event(cmd, result, now)], now=now)
        self.metrics.messages.labels(cmd.program_id, cmd.step_id, d.channel,
                                     "unconfirmed").inc()

    async def refresh_gauges(self) -> int:
        """Recount the outbox backlog; 0, so the loop waits its interval."""
        self.metrics.outbox.set(await outbox.backlog(self.engine, tables.outbox))
        return 0

    async def relay_outbox(self, producer: AIOKafkaProducer, limit: int = 500) -> int:
        """Publish pending outbox rows; they are deleted once Kafka acknowledged them."""
        published = await outbox.relay(self.engine, tables.outbox, producer, limit)
        self.metrics.published.inc(published)
        return published

    def _event(self, cmd: SendMessage, result: Result, now: datetime) -> Outgoing:
        event = outcome_event(cmd, result, now=now)
        return Outgoing(self.topics.events, cmd.lead_id.encode(), orjson.dumps(event),
                             [*EVENT_HEADERS, ("ce_type", event["type"])])

    def _letter(self, key: bytes | None, value: bytes | None, origin: Origin, error: str,
                now: datetime) -> Outgoing:
        k, v, headers = dead_letter(key=key, value=value, origin=origin, error=error,
                                    consumer=CONSUMER, failed_at=now)
        return Outgoing(self.topics.deadletter, k, v,
                             [(name, raw.decode()) for name, raw in headers])


def _as_dispatch_error(exc: Exception, cmd: SendMessage) -> DispatchError:
    """A provider call's failure as a DispatchError: adapters raise those; anything else (a
    bug, the database during the hand-off write) is logged and retried like an outage, so the
    attempt budget still ends it."""
    if isinstance(exc, DispatchError):
        return exc
    log.error("delivery attempt crashed", exc_info=exc, extra=_fields(cmd))
    return ProviderUnavailable("attempt_crashed", type(exc).__name__)


def _fields(cmd: SendMessage) -> dict[str, object]:
    """What a decision log line says about a message (no raw lead id, no address)."""
    return {"message_id": cmd.message_id, "event_id": cmd.event_id,
            "lead_hash": lead_hash(cmd.lead_id), "program": cmd.program_id,
            "step": cmd.step_id, "channel": cmd.channel}
