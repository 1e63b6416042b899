"""The ingest HTTP application (FastAPI). Route handlers stay thin: read and authenticate the
request, hand the body to the pure intake code, publish, translate errors to HTTP."""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.common.clock import Clock, SystemClock
from services.common.config.settings import KafkaSettings
from services.common.http.server import metrics_response
from services.common.kafka.deadletter import Origin, dead_letter
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.ingest.adapters.publisher import (
    KafkaPublisher,
    Publisher,
    PublishRefused,
    PublishUnavailable,
)
from services.ingest.domain import segment
from services.ingest.domain.auth import ApiKey, AuthError, authenticate
from services.ingest.domain.intake import (
    FieldProblem,
    Record,
    Rejected,
    accept,
    check_sources,
    decode_json,
    events_from_body,
    media_type,
)
from services.ingest.domain.ratelimit import RateLimiter, retry_after
from services.ingest.metrics import REASONS, IngestMetrics
from services.ingest.openapi import BATCH_BODY, EVENTS_BODY, RESPONSES
from services.ingest.settings import IngestSettings
from services.ingest.tracking import add_tracking_routes
from services.ingest.webhooks import add_webhook_routes, secret_key

log = logging.getLogger(__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body (gunzipped if sent gzip), refusing to buffer more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Rejected(413, f"request body over {limit} bytes")
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            plain = inflater.decompress(bytes(body), limit + 1)
        except zlib.error:
            raise Rejected(400, "body is not valid gzip") from None
        if len(plain) > limit or inflater.unconsumed_tail:
            raise Rejected(413, f"request body over {limit} bytes once decompressed")
        return plain
    return bytes(body)


def create_app(
    settings: IngestSettings,
    kafka: KafkaSettings,
    *,
    publisher: Publisher | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    tracking_keys: list[bytes] | None = None,
) -> FastAPI:
    """Build the app. Without an injected `publisher`, a Kafka one is connected at start-up."""
    keys = tuple(ApiKey(k.name, k.sha256, tuple(k.sources), tuple(k.types))
                 for k in settings.api_keys)
    clock = clock or SystemClock()
    registry = registry or new_registry()
    metrics = IngestMetrics(registry)
    topics = Topics(kafka.topic_prefix)
    limiter = RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
    metrics.kafka_connected.set_function(
        lambda: float(getattr(app.state.publisher, "connected", False)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if publisher is not None:
            app.state.publisher = publisher
            yield
            return
        kafka_publisher = KafkaPublisher(kafka, topic=Topics(kafka.topic_prefix).events,
                                         timeout=settings.produce_timeout_seconds)
        app.state.publisher = kafka_publisher
        kafka_publisher.start()
        try:
            yield
        finally:
            await kafka_publisher.close()

    app = FastAPI(
        title="Nurture ingest", version="1.0",
        description="Send behavioral events (CloudEvents 1.0, or Segment-style batches) into "
                    "Nurture. Every 2xx means Kafka has the events.",
        lifespan=lifespan,
    )
    app.state.publisher = publisher

    def accept_all(events: list[dict[str, Any]], key: ApiKey,
                   received_at: datetime) -> list[Record]:
        return accept(events, key=key, received_at=received_at,
                      max_future_seconds=settings.max_future_seconds,
                      max_event_bytes=settings.max_event_bytes)

    async def handle(request: Request, route: str,
                     to_events: Callable[[bytes, ApiKey], list[dict[str, Any]]],
                     ok_status: int, ok_body: Callable[[int], dict[str, Any]], *,
                     identify: Callable[[Request], ApiKey] | None = None,
                     to_records: Callable[[bytes, ApiKey, datetime],
                                          tuple[list[Record], list[FieldProblem]]] | None = None,
                     ) -> Response:
        """Authenticate, read, turn into records (all-or-nothing via `to_events`, or partial via
        `to_records`, which also returns the rejected items), publish, answer."""
        started = time.perf_counter()
        rejected: list[FieldProblem] = []
        try:
            key = (identify(request) if identify is not None
                   else authenticate(keys, request.headers.get("authorization")))
            # per API key; signed webhooks (identify) are the provider's, not a client's
            wait = limiter.acquire(key.name, now=time.monotonic()) if identify is None else 0.0
            if wait:
                raise Rejected(429, f"rate limit of key '{key.name}' reached; retry later",
                               retry_after=retry_after(wait))
            body = await read_body(request, settings.max_body_bytes)
            received_at = clock.now()
            if to_records is not None:
                records, rejected = to_records(body, key, received_at)
            else:
                records = accept_all(to_events(body, key), key, received_at)
            produce_started = time.perf_counter()
            await app.state.publisher.publish(records)
            metrics.produce.observe(time.perf_counter() - produce_started)
        except AuthError as exc:
            response = problem(exc.status, exc.message)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="nurture"'
        except Rejected as exc:
            response = problem(exc.status, exc.message, [
                {"index": p.index, "path": p.path, "message": p.message} for p in exc.problems])
            if exc.retry_after:
                response.headers["Retry-After"] = exc.retry_after
        except PublishRefused as exc:
            response = problem(413, f"{exc}; nothing was accepted")
        except PublishUnavailable as exc:
            log.warning("publish failed, answering 503", extra={"reason": str(exc)})
            response = problem(503, "Kafka did not acknowledge the events in time: they are "
                                    "not accepted; retry them (id + source make a retry safe)")
            response.headers["Retry-After"] = str(settings.retry_after_seconds)
        else:
            accepted = [r for r in records if r.topic is None]
            for event_type, count in Counter(r.event_type for r in accepted).items():
                metrics.accepted.labels(event_type).inc(count)
            metrics.rejected.labels("invalid").inc(len({p.index for p in rejected}))
            reply = ok_body(len(accepted))
            if rejected:
                reply["rejected"] = [{"index": p.index, "path": p.path, "message": p.message}
                                     for p in rejected]
            response = JSONResponse(reply, status_code=ok_status)
        if response.status_code >= 400:
            metrics.rejected.labels(REASONS.get(response.status_code, "other")).inc()
        metrics.requests.labels(route, str(response.status_code)).observe(
            time.perf_counter() - started)
        return response

    @app.post("/v1/events", status_code=202, openapi_extra=EVENTS_BODY, responses=RESPONSES,
              summary="Send one CloudEvent or a batch")
    async def post_events(request: Request) -> Response:
        """One event (`application/cloudevents+json` or `application/json`) or a batch
        (`application/cloudevents-batch+json`, or a JSON array). All-or-nothing."""
        ctype = request.headers.get("content-type")

        def to_events(body: bytes, _key: ApiKey) -> list[dict[str, Any]]:
            return events_from_body(body, ctype, max_events=settings.max_batch_events)

        return await handle(request, "/v1/events", to_events, 202, lambda n: {"accepted": n})

    @app.post("/v1/batch", status_code=200, openapi_extra=BATCH_BODY, responses=RESPONSES,
              summary="Segment-compatible batch (identify, track, page, screen, group)")
    async def post_batch(request: Request) -> Response:
        """The Segment HTTP API's batch call, so Segment and RudderStack SDKs work unchanged.
        Answers 200 (what those SDKs expect) once Kafka has every event."""
        ctype = media_type(request.headers.get("content-type"))

        def to_records(body: bytes, key: ApiKey,
                       received_at: datetime) -> tuple[list[Record], list[FieldProblem]]:
            if ctype not in ("application/json", "text/plain"):
                raise Rejected(415, f"unsupported content type '{ctype}': use application/json")
            doc = decode_json(body)
            mapped, problems = segment.map_calls(doc, key_name=key.name,
                                                 received_at=received_at,
                                                 max_events=settings.max_batch_events)
            check_sources([event for _, event in mapped], key)  # a key problem refuses all
            records: list[Record] = []
            for index, event in mapped:
                try:
                    records += accept_all([event], key, received_at)
                except Rejected as exc:
                    problems += [FieldProblem(index, p.path, p.message) for p in exc.problems] \
                        or [FieldProblem(index, "", exc.message)]
            records += segment_dead_letters(doc["batch"], problems, topics.deadletter,
                                            received_at)
            return records, sorted(problems, key=lambda p: p.index)

        return await handle(request, "/v1/batch", lambda _b, _k: [], 200,
                            lambda n: {"success": True, "accepted": n}, to_records=to_records)

    email_secret = settings.email_webhook_secret
    add_webhook_routes(app, handle=handle, clock=clock, max_events=settings.max_batch_events,
                       email_key=secret_key(email_secret.get_secret_value())
                       if email_secret is not None else None)

    if tracking_keys:
        async def publish(records: list[Record]) -> None:
            await app.state.publisher.publish(records)

        add_tracking_routes(app, keys=tracking_keys, publish=publish, clock=clock)

    @app.get("/healthz", summary="Liveness: the process is serving")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: connected to Kafka and the broker answers")
    async def readyz() -> Response:
        if await app.state.publisher.ping():
            return JSONResponse({"status": "ready"})
        return problem(503, "not connected to Kafka")

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return metrics_response(registry)

    return app


def segment_dead_letters(calls: list[Any], problems: list[FieldProblem], topic: str,
                         when: datetime) -> list[Record]:
    """One dead letter per rejected Segment call: its original JSON and every reason, so it is
    not lost and can be fixed and sent again (`nurture-dlq list` finds it; having no origin
    topic, `replay` leaves it)."""
    reasons: dict[int, list[str]] = {}
    for p in problems:
        reasons.setdefault(p.index, []).append(f"{p.path}: {p.message}" if p.path else p.message)
    out = []
    for index, why in sorted(reasons.items()):
        call = calls[index]
        lead = call.get("userId") or call.get("anonymousId") if isinstance(call, dict) else None
        key, value, headers = dead_letter(
            key=str(lead).encode() if lead else None, value=orjson.dumps(call),
            origin=Origin("http:/v1/batch", 0, index), error="; ".join(why)[:2000],
            consumer="nurture-ingest", failed_at=when)
        out.append(Record(key, value, "deadletter", headers, topic=topic))
    return out


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)

