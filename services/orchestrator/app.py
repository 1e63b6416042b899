"""The orchestrator process: the HTTP API (FastAPI) and, in its lifespan, the scored-event
consumer, the timer poller and the outbox relay."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.common.config.settings import KafkaSettings
from services.common.db.retention import Pruner
from services.common.http.bodylimit import BodyLimit
from services.common.http.server import metrics_response, readiness
from services.common.kafka.clients import make_consumer, make_producer
from services.common.kafka.loops import consume, finish, loop
from services.common.kafka.topics import Topics
from services.common.observability.logging import lead_hash
from services.common.observability.metrics import new_registry
from services.orchestrator import sms_inbound
from services.orchestrator.adapters import erasure, queries, retention
from services.orchestrator.adapters import repository as repo
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects
from services.orchestrator.domain.lead import Lead
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.runtime import Orchestrator
from services.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)
GAUGE_SECONDS = 15.0  # gauges recounted from PostgreSQL, lag from the consumer
MAX_BODY_BYTES = 64 * 1024  # every route: refused before authentication reads anything


class Problem(BaseModel):
    detail: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (all `{"detail": "..."}`)."""
    what = {400: "The body is not JSON", 401: "Missing or wrong bearer token",
            404: "Not found, or the endpoint is off", 409: "Not allowed now; `detail` says why",
            413: "The request body is too large", 503: "Not ready or not healthy"}
    return {code: {"model": Problem, "description": what[code]} for code in codes}


class EnrollRequest(BaseModel):
    program: str = Field(min_length=1, description="program id")


class ClockAdvance(BaseModel):
    seconds: float = Field(gt=0, le=10 * 365 * 86400)


def _own_token(secret: SecretStr | None, what: str, variable: str) -> Callable[[Request], None]:
    """The check of endpoints behind a token of their own: 404 while the token is unset (the
    endpoints are off), 401 for any other credentials (the API token included)."""
    def check(request: Request) -> None:
        if secret is None:
            raise HTTPException(404, f"{what} are disabled (set NURTURE_ORCHESTRATOR_{variable}"
                                     "_TOKEN to enable them)")
        given = request.headers.get("authorization", "")
        expected = f"Bearer {secret.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, f"missing or wrong {variable.lower()} token",
                                headers={"WWW-Authenticate": 'Bearer realm="nurture"'})
    return check


def make_engine(settings: OrchestratorSettings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url, pool_size=10, pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": settings.db_schema}})


async def _run_workers(app: FastAPI, settings: OrchestratorSettings, kafka: KafkaSettings,
                       orch: Orchestrator, stop: asyncio.Event) -> None:
    """Connect to Kafka (waiting out an unreachable broker) and run the loops."""
    topics = Topics(kafka.topic_prefix)
    group = f"{kafka.topic_prefix}{settings.group_id}"
    consumer = make_consumer(kafka, topics.scored_events, client_id="nurture-orchestrator",
                             group_id=group)
    producer = make_producer(kafka, client_id="nurture-orchestrator")
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10),
                                       retry=retry_if_exception_type(KafkaError)):
        with attempt:
            await producer.start()
            await consumer.start()
    app.state.kafka_ready = True
    pruner = Pruner(orch.engine, retention.RULES, timedelta(days=settings.retention_days),
                    orch.metrics.pruned, dedupes="nurture.scored-events.v1")

    async def prune() -> int:  # 0: the loop waits its interval after a round
        await orch.prune(pruner)
        return 0

    try:
        await asyncio.gather(
            consume(orch.handle_batch, consumer, stop),
            loop(orch.fire_timers, stop, settings.timer_poll_seconds, what="timers"),
            loop(lambda: orch.relay_outbox(producer), stop, settings.relay_idle_seconds,
                 wake=orch.outbox_ready, what="outbox"),
            loop(prune, stop, settings.prune_interval_seconds, what="prune"),
            loop(orch.refresh_gauges, stop, GAUGE_SECONDS, what="gauges"),
            loop(lambda: orch.metrics.lag.update(consumer, group), stop, GAUGE_SECONDS,
                 what="lag"))
    finally:
        app.state.kafka_ready = False  # not ready any more, whatever ended the workers
        await consumer.stop()
        await producer.stop()


def create_app(settings: OrchestratorSettings, kafka: KafkaSettings, decider: Decider, *,
               registry: CollectorRegistry | None = None, run_workers: bool = True) -> FastAPI:
    registry = registry or new_registry()
    metrics = OrchestratorMetrics(registry, decider.programs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        orch = Orchestrator(engine, decider, Topics(kafka.topic_prefix), metrics)
        app.state.orch, app.state.kafka_ready = orch, not run_workers
        stop = asyncio.Event()
        workers = asyncio.create_task(_run_workers(app, settings, kafka, orch, stop)) \
            if run_workers else None
        app.state.workers = workers
        try:
            yield
        finally:
            stop.set()
            if workers is not None:
                await finish(workers, stop, settings.shutdown_grace_seconds)
            await engine.dispose()

    app = FastAPI(title="Nurture orchestrator", version="1.0", lifespan=lifespan,
                  description="Leads, lifecycle stages, nurture programs and the funnel.")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    token = settings.api_token.get_secret_value() if settings.api_token else None

    def authorized(request: Request) -> None:
        if token is None:
            raise HTTPException(401, "the API has no token configured")
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": 'Bearer realm="nurture"'})

    admin = _own_token(settings.admin_token, "admin endpoints", "ADMIN")
    auth = [Depends(authorized)]
    enrollments = [Depends(_own_token(settings.enrollment_token, "enrollment changes",
                                      "ENROLLMENT"))]

    def orch_of(request: Request) -> Orchestrator:
        return request.app.state.orch  # type: ignore[no-any-return]

    @app.get("/v1/leads/{lead_id}", dependencies=auth, responses=errors(401, 404),
             summary="A lead: profile, scores, stage, enrollments, messages")
    async def get_lead(lead_id: str, request: Request) -> dict[str, Any]:
        async with orch_of(request).engine.connect() as conn:
            view = await queries.lead_view(conn, lead_id=lead_id)
        if view is None:
            raise HTTPException(404, f"no lead '{lead_id}'")
        return view

    @app.post("/v1/leads/{lead_id}/enrollments", status_code=201, dependencies=enrollments,
              responses=errors(400, 401, 404, 409),
              summary="Enroll a lead in a program (what a sales rep does)")
    async def enroll(lead_id: str, body: EnrollRequest, request: Request) -> dict[str, Any]:
        if body.program not in decider.programs:
            raise HTTPException(404, f"no program '{body.program}'")
        program = decider.programs[body.program]
        orch = orch_of(request)
        refused: list[str] = []

        def decide(lead: Lead, now: float) -> Effects:
            why = decider.eligible(lead, program, now)
            if why:
                refused.append(why)
                return Effects()
            return decider.enroll(lead, body.program, now, cause="api")

        lead, _fx = await orch.apply(lead_id, decide)
        if refused:
            raise HTTPException(409, f"not enrolled: {refused[0]}")
        enr = lead.enrollments[body.program]
        return {"lead_id": lead_id, "program": body.program, "status": enr.status,
                "step": enr.step, "program_version": enr.program_version}

    @app.delete("/v1/leads/{lead_id}/enrollments/{program}", dependencies=enrollments,
                responses=errors(401, 404),
                summary="End an enrollment")
    async def unenroll(lead_id: str, program: str, request: Request) -> dict[str, Any]:
        async with orch_of(request).engine.connect() as conn:
            exists = await repo.get_lead(conn, lead_id=lead_id)
        if exists is None or program not in exists.enrollments \
                or not exists.enrollments[program].active:
            raise HTTPException(404, f"lead '{lead_id}' is not enrolled in '{program}'")
        await orch_of(request).apply(lead_id, lambda lead, now: decider.unenroll(lead, program,
                                                                                 now))
        return {"lead_id": lead_id, "program": program, "status": "exited"}

    @app.delete("/v1/leads/{lead_id}", status_code=202, dependencies=auth,
                responses=errors(401),
                summary="Erase a person: their PII here, in scoring and in dispatch")
    async def erase_lead(lead_id: str, request: Request) -> dict[str, Any]:
        """Deletes the lead's profile and pending messages, keeps anonymous counts, and
        publishes `lead.erased` so scoring and dispatch erase too (docs/security.md).
        Idempotent; 202 whether or not the lead was known."""
        orch = orch_of(request)
        async with orch.engine.begin() as conn:
            found = await erasure.erase(conn, lead_id=lead_id, topics=orch.topics,
                                        now=await orch.clock.now(conn), announce=True)
        orch.outbox_ready.set()
        log.info("lead erased", extra={"lead_hash": lead_hash(lead_id), "found": found})
        return {"lead_id": lead_id, "erased": True, "found": found}

    @app.get("/v1/programs", dependencies=auth, responses=errors(401),
             summary="Programs with per-step counts")
    async def programs(request: Request) -> list[dict[str, Any]]:
        async with orch_of(request).engine.connect() as conn:
            stats = await queries.program_stats(conn)
        return [{"id": p.id, "version": p.version, "name": p.name, "priority": p.priority,
                 "trigger": p.trigger.kind, "steps": [s.id for s in p.steps],
                 **stats.get(p.id, {"entered": 0, "active": 0, "waiting_at_step": {},
                                    "exited": {}, "messages": {}})}
                for p in decider.programs.values()]

    @app.get("/v1/funnel", dependencies=auth, responses=errors(401),
             summary="Leads per stage, conversion, time in stage, sales cycle")
    async def funnel(request: Request) -> dict[str, Any]:
        async with orch_of(request).engine.connect() as conn:
            return await queries.funnel(conn)

    @app.post("/v1/admin/clock/advance", dependencies=[Depends(admin)],
              responses=errors(400, 401, 404),
              summary="Move the shared clock forward (tests, demos)")
    async def advance(body: ClockAdvance, request: Request) -> dict[str, float]:
        orch = orch_of(request)
        async with orch.engine.begin() as conn:
            offset = await repo.advance_clock(conn, seconds=body.seconds)
            now = await orch.clock.now(conn)
        return {"offset_seconds": offset, "now": now}

    @app.post("/v1/webhooks/sms", responses=errors(401, 404, 413) | {
        200: {"content": {"text/xml": {}}, "description": "TwiML"}},
        summary="Inbound SMS (Twilio-compatible): STOP, START, HELP")
    async def sms_webhook(request: Request) -> Response:
        """Signed with `X-Twilio-Signature` over NURTURE_ORCHESTRATOR_PUBLIC_URL; answers TwiML."""
        if settings.sms_auth_token is None or not settings.public_url:
            raise HTTPException(404, "inbound SMS is disabled (set NURTURE_ORCHESTRATOR_"
                                     "SMS_AUTH_TOKEN and NURTURE_ORCHESTRATOR_PUBLIC_URL)")
        # public until verified: BodyLimit (MAX_BODY_BYTES) stops a big body while it streams
        body = (await request.body()).decode(errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        url = settings.public_url.rstrip("/") + "/v1/webhooks/sms"
        if not sms_inbound.verified(settings.sms_auth_token.get_secret_value(), url, form,
                                    request.headers.get("x-twilio-signature")):
            raise HTTPException(401, "missing or wrong X-Twilio-Signature")
        orch = orch_of(request)
        async with orch.engine.begin() as conn:
            now = await orch.clock.now(conn)
            leads = await sms_inbound.leads_with_phone(conn, form.get("From", ""))
            events = sms_inbound.events_for(form, leads, now)
            if not leads:  # profiles hold E.164 numbers (ingest validates them), as providers send
                log.warning("inbound SMS from a number no lead has", extra={
                    "number_hash": hashlib.sha256(form.get("From", "").encode()).hexdigest()[:16],
                    "keyword": sms_inbound.keyword(form.get("Body", ""))})
            if events:
                await repo.save(conn, leads={}, effects=[], topics=orch.topics, now=now,
                                extra_outbox=sms_inbound.outgoing(events, orch.topics))
        orch.outbox_ready.set()
        word = sms_inbound.keyword(form.get("Body", ""))
        reply = sms_inbound.HELP_REPLY if word in sms_inbound.HELP else None
        return Response(sms_inbound.twiml(reply), media_type="text/xml")

    @app.get("/healthz", responses=errors(503))
    async def healthz(request: Request) -> Response:
        workers = getattr(request.app.state, "workers", None)
        if workers is not None and workers.done():
            return JSONResponse({"detail": "the background workers stopped; see the log"}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", responses=errors(503))
    async def readyz(request: Request) -> Response:
        return await readiness(orch_of(request).engine, kafka_ready=request.app.state.kafka_ready)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return metrics_response(registry)

    return app
