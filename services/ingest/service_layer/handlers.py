"""ingest's use cases, one method each: accept events, accept a Segment batch, accept a provider
webhook, record a tracking hit. Each takes what the request carried (already authenticated and
read by the HTTP entrypoint), calls the pure domain code, publishes and says what was accepted.
Errors are the domain's (`Rejected`, `AuthError`, `TokenError`) and the publisher's
(`PublishUnavailable`, `PublishRefused`); the entrypoint translates them to HTTP."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.bindings import media_type
from services.common.clock import Clock
from services.common.kafka.topics import Topics
from services.common.tracking import Kind, TrackingClaims, verify
from services.ingest.adapters.publisher import Publisher
from services.ingest.domain import browser, engagement, providers, segment
from services.ingest.domain.auth import ApiKey, AuthError, authenticate, key_named_by
from services.ingest.domain.intake import (
    FieldProblem,
    Record,
    Rejected,
    accept,
    decode_json,
    events_from_body,
    to_record,
)
from services.ingest.domain.ratelimit import RateLimiter, client_group, retry_after
from services.ingest.domain.recent import RecentIds
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings

SEGMENT_TYPES = ("application/json", "text/plain")
CLIENT_BUCKETS = 100_000  # client addresses with a rate-limit bucket (all forgotten beyond)


@dataclass(frozen=True)
class Accepted:
    """What a request got accepted: `count` events (acknowledged by Kafka) and the items that
    were refused without refusing the request (a Segment batch's unusable calls)."""

    count: int
    rejected: list[FieldProblem] = field(default_factory=list)


class Handlers:
    """ingest's use cases over one publisher, clock, rate limiter and set of settings."""

    def __init__(self, settings: IngestSettings, *, publisher: Publisher, clock: Clock,
                 metrics: IngestMetrics, topics: Topics, limiter: RateLimiter,
                 email_key: bytes | None, tracking_keys: Sequence[bytes]) -> None:
        self.settings, self.publisher, self.clock = settings, publisher, clock
        self.metrics, self.topics, self.limiter = metrics, topics, limiter
        self.email_key, self.tracking_keys = email_key, list(tracking_keys)
        self.recent = RecentIds(window=settings.segment_dedupe_seconds)
        self.client_limiter = RateLimiter(rate=settings.client_rate_limit_per_second,
                                          burst=settings.client_rate_limit_burst,
                                          max_keys=CLIENT_BUCKETS)

    def admit(self, key: ApiKey, client: str | None = None) -> None:
        """Rejected(429) once `key` has used up its rate (per API key, per process), or, for a
        browser key, once the `client` address has used up its own."""
        now = time.monotonic()
        # the client's bucket first: one busy visitor must not use up the key for everybody
        wait = self.client_limiter.acquire(f"{key.name} {client_group(client)}", now=now) \
            if key.browser and client else 0.0
        if wait:
            raise Rejected(429, f"rate limit of key '{key.name}' for one client address "
                                "reached; retry later", retry_after=retry_after(wait))
        wait = self.limiter.acquire(key.name, now=now)
        if wait:
            raise Rejected(429, f"rate limit of key '{key.name}' reached; retry later",
                           retry_after=retry_after(wait))

    def browser_call(self, kind: str, body: bytes, content_type: str | None,
                     authorization: str | None,
                     keys: tuple[ApiKey, ...]) -> tuple[ApiKey, dict[str, Any]]:
        """(the API key, the Segment batch document) of what a page's analytics.js posted to
        `/v1/<kind>`: the key from Basic auth, else the body's `writeKey` (AuthError(401)
        without either)."""
        if media_type(content_type) not in SEGMENT_TYPES:
            raise Rejected(415, f"unsupported content type '{media_type(content_type)}': use "
                                "text/plain or application/json")
        segment.check_batch_size(len(body))
        write_key, doc = browser.calls_of(kind, decode_json(body))
        if authorization:
            return authenticate(keys, authorization), doc
        if write_key is None:
            raise AuthError(401, "missing write key: send 'writeKey' in the body or HTTP Basic")
        return key_named_by(keys, write_key), doc

    async def accept_events(self, body: bytes, headers: Mapping[str, str],
                            key: ApiKey) -> Accepted:
        """`POST /v1/events`: one CloudEvent (structured, or binary with `ce-*` `headers`) or a
        batch, all-or-nothing."""
        received_at = self.clock.now()
        events = events_from_body(body, headers.get("content-type"), headers=headers,
                                  max_events=self.settings.max_batch_events)
        return await self._publish(self._accept(events, key, received_at))

    async def accept_segment_batch(self, body: bytes, content_type: str | None,
                                   key: ApiKey) -> Accepted:
        """`POST /v1/batch`: the calls that map are published, the others dead-lettered (and
        listed); a key that may not send the batch's source refuses it all."""
        ctype = media_type(content_type)
        if ctype not in SEGMENT_TYPES:
            raise Rejected(415, f"unsupported content type '{ctype}': use application/json")
        segment.check_batch_size(len(body))
        return await self.accept_segment_doc(decode_json(body), key)

    async def accept_segment_doc(self, doc: Any, key: ApiKey,
                                 client: str | None = None) -> Accepted:
        """A Segment batch document: the calls that map are published, the others
        dead-lettered (and listed). `client`: the address of the page's request, the
        `context.ip` of a call that names none (a page cannot know it; Segment does the same)."""
        received_at = self.clock.now()
        mapped, problems = segment.map_calls(doc, key_name=key.name, received_at=received_at,
                                             client_ip=self.settings.segment_client_ip,
                                             client_address=client)
        source = f"segment:{key.name}"  # every call's: a key that may not send it refuses all
        if not key.allows_source(source):
            raise Rejected(403, f"API key '{key.name}' may not send events with source "
                                f"'{source}'")
        fresh, repeated = self._fresh(mapped)
        records: list[Record] = []
        published: list[tuple[str, str]] = []
        for index, event in fresh:
            try:
                records += self._accept([event], key, received_at)
                published.append((event["source"], event["id"]))
            except Rejected as exc:
                problems += [FieldProblem(index, p.path, p.message) for p in exc.problems] \
                    or [FieldProblem(index, "", exc.message)]
        records += segment.dead_letters(doc["batch"], problems, topic=self.topics.deadletter,
                                        when=received_at)
        accepted = await self._publish(records)
        self.recent.add(published, now=time.monotonic())  # the refused ones stay refused
        self.metrics.rejected.labels("invalid").inc(len({p.index for p in problems}))
        self.metrics.repeated.inc(repeated)
        return Accepted(accepted.count + repeated, sorted(problems, key=lambda p: p.index))

    def _fresh(self, mapped: list[tuple[int, dict[str, Any]]],
               ) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """(the calls not published lately nor earlier in the batch, how many others)."""
        now, fresh, ids = time.monotonic(), [], set()
        for index, event in mapped:
            pair = (event["source"], event["id"])
            if pair not in ids and not self.recent.seen(*pair, now=now):
                fresh.append((index, event))
                ids.add(pair)
        return fresh, len(mapped) - len(fresh)

    def email_webhook_on(self) -> None:
        """Rejected(404) while the email webhook has no secret (the endpoint is off)."""
        if self.email_key is None:
            raise Rejected(404, "the email webhook is off: set "
                                f"{providers.EMAIL_WEBHOOK_SETTING}")

    async def accept_email_webhook(self, body: bytes, headers: Mapping[str, str]) -> Accepted:
        """The email provider's signed callback: verified, mapped, all-or-nothing."""
        self.email_webhook_on()
        assert self.email_key is not None
        received_at = self.clock.now()
        webhook_id = providers.verify_signature(self.email_key, headers=headers, body=body,
                                                now=self.clock.now().timestamp())
        events = providers.email_events(decode_json(body), webhook_id=webhook_id,
                                        max_events=self.settings.max_batch_events)
        return await self._publish(self._accept(events, providers.EMAIL_KEY, received_at))

    async def accept_crm_webhook(self, body: bytes, key: ApiKey) -> Accepted:
        """A CRM callback sent with an ingest API key: mapped, all-or-nothing."""
        received_at = self.clock.now()
        events = providers.crm_events(decode_json(body), key_name=key.name,
                                      max_events=self.settings.max_batch_events)
        return await self._publish(self._accept(events, key, received_at))

    def verify_link(self, token: str, kind: Kind) -> TrackingClaims:
        """The claims of a tracking token of `kind`; TokenError (TokenExpired...) if unusable."""
        return verify(token, keys=self.tracking_keys, now=self.clock.now().timestamp(),
                      kind=kind)

    async def record_open(self, claims: TrackingClaims) -> None:
        await self._record_hit(lambda now: engagement.opened(claims, now=now))

    async def record_click(self, claims: TrackingClaims) -> None:
        await self._record_hit(lambda now: engagement.clicked(claims, now=now))

    async def record_unsubscribe(self, claims: TrackingClaims, form: bytes) -> None:
        await self._record_hit(lambda now: engagement.unsubscribed(claims, form, now=now))

    async def ready(self) -> bool:
        return await self.publisher.ping()

    async def _record_hit(self, event_at: Callable[[float], dict[str, Any]]) -> None:
        """Publish the event of a tracking hit, stamped now (PublishUnavailable if Kafka is
        down: the caller decides what the reader sees)."""
        now = self.clock.now().timestamp()
        record = to_record(event_at(now), received_at=datetime.fromtimestamp(now, UTC))
        await self.publisher.publish([record])

    def _accept(self, events: list[dict[str, Any]], key: ApiKey,
                received_at: datetime) -> list[Record]:
        return accept(events, key=key, received_at=received_at,
                      max_future_seconds=self.settings.max_future_seconds,
                      max_event_bytes=self.settings.max_event_bytes)

    async def _publish(self, records: list[Record]) -> Accepted:
        """Publish and count what Kafka acknowledged, by event type (dead letters excluded)."""
        started = time.perf_counter()
        await self.publisher.publish(records)
        self.metrics.produce.observe(time.perf_counter() - started)
        accepted = [r for r in records if r.topic is None]
        for event_type, count in Counter(r.event_type for r in accepted).items():
            self.metrics.accepted.labels(event_type).inc(count)
        return Accepted(len(accepted))
