"""The orchestrator against the real PostgreSQL and Kafka: scored events in, dispatch commands
out at the right (controllable) time; redeliveries change nothing; replicas share timers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from schemas import validate_event
from schemas.vocabulary import rfc3339
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.operator.explain import NotFound, OpsSettings, explain, fetch
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import EventMatch, Program, Step, Trigger
from services.orchestrator.entrypoints.http.app import create_app
from services.orchestrator.settings import OrchestratorSettings
from tests.support import (
    isolated_kafka,
    model_score,
    read_topic,
    scored_record,
    serve,
    wait_until,
)

# events as a publisher sends them now: a program's max_event_age (3 days by default)
# judges their age against the orchestrator's clock, the wall clock here
RECENT = rfc3339(time.time() - 60)

H, D = 3600, 86400
API = {"Authorization": "Bearer api-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
ENROLLING = {"Authorization": "Bearer enrollment-token"}
PRICING = Program(
    id="pricing", version=1, name="Pricing abandoner",
    trigger=Trigger("event", event=EventMatch(
        frozenset({"web.page_viewed"}), lambda d: str(d.get("path", "")).startswith("/pricing"))),
    steps=(Step("wait-1h", "wait", seconds=H),
           Step("email-1", "send", channel="email", template="pricing-followup"),
           Step("wait-2d", "wait", seconds=2 * D),
           Step("case-study", "send", channel="email", template="case-study")))


def decider() -> Decider:
    return Decider([PRICING], ContactPolicy(caps=(), quiet_hours=None))


@pytest.fixture
async def schema(database_url: str) -> str:
    name = f"o_{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(upgrade, database_url, name)
    return name


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def orchestrators(database_url: str, schema: str,
                        kafka: KafkaSettings) -> AsyncIterator[Callable[[], Any]]:
    """Start orchestrator replicas (real uvicorn servers) sharing one schema and group."""
    async with AsyncExitStack() as stack:
        async def start() -> str:
            settings = OrchestratorSettings(  # type: ignore[call-arg]
                DATABASE_URL=database_url, db_schema=schema, api_token="api-token",
                admin_token="admin-token", enrollment_token="enrollment-token",
                timer_poll_seconds=0.1, relay_idle_seconds=0.05)
            app = create_app(bootstrap(settings, kafka, decider()))
            url = await stack.enter_async_context(serve(app))
            async with httpx.AsyncClient() as client:
                async def ready() -> bool:
                    return (await client.get(f"{url}/readyz")).status_code == 200
                await wait_until(ready, timeout=60, what="orchestrator ready")
            return url
        yield start


def scored(lead: str, eid: str, path: str) -> bytes:
    return scored_event(lead, eid, "web.page_viewed", {"url": f"https://x.io{path}", "path": path})


def profile(lead: str) -> tuple[str, bytes]:
    return lead, scored_event(lead, f"{lead}-profile", "crm.lead_upserted",
                              {"email": f"{lead}@example.com", "first_name": "Ada"})


def scored_event(lead: str, eid: str, etype: str, data: dict[str, Any]) -> bytes:
    return scored_record({"specversion": "1.0", "id": eid, "source": "itest", "type": etype,
                          "subject": lead, "time": RECENT, "data": data},
                         model_score(21.0))


async def produce(kafka: KafkaSettings, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(Topics(kafka.topic_prefix).scored_events, value,
                                         key=key.encode())
    finally:
        await producer.stop()


def commands(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


async def test_events_in_commands_out_on_the_controllable_clock(
        orchestrators: Callable[[], Any], kafka: KafkaSettings) -> None:
    url = await orchestrators()
    topics = Topics(kafka.topic_prefix)
    await produce(kafka, [profile("lead-1"), ("lead-1", scored("lead-1", "e1", "/pricing"))])
    async with httpx.AsyncClient() as client:
        async def enrolled() -> bool:
            r = await client.get(f"{url}/v1/leads/lead-1", headers=API)
            return r.status_code == 200 and bool(r.json()["enrollments"])
        await wait_until(enrolled, timeout=30, what="lead enrolled")
        view = (await client.get(f"{url}/v1/leads/lead-1", headers=API)).json()
        assert view["messages"] == []
        assert [e["status"] for e in view["enrollments"]] == ["active"]

        # a redelivered event (same source + id) changes nothing
        await produce(kafka, [("lead-1", scored("lead-1", "e1", "/pricing")),
                              ("lead-1", scored("lead-1", "e2", "/docs"))])
        assert (await client.post(f"{url}/v1/admin/clock/advance", json={"seconds": H},
                                  headers=ADMIN)).status_code == 200
        first = await read_topic(kafka.bootstrap_servers, topics.dispatch,
                                 until=lambda rs: len(rs) >= 1)
        (cmd,) = commands(first)
        assert (cmd["lead_id"], cmd["channel"], cmd["template"], cmd["step_id"]) == (
            "lead-1", "email", "pricing-followup", "email-1")
        assert cmd["context"]["email"] == "lead-1@example.com"
        assert first[0].key == b"lead-1"

        await client.post(f"{url}/v1/admin/clock/advance", json={"seconds": 2 * D},
                          headers=ADMIN)
        both = await read_topic(kafka.bootstrap_servers, topics.dispatch,
                                until=lambda rs: len(rs) >= 2)
        assert [c["template"] for c in commands(both)] == ["pricing-followup", "case-study"]
        assert len({c["message_id"] for c in commands(both)}) == 2

        view = (await client.get(f"{url}/v1/leads/lead-1", headers=API)).json()
        assert [e["status"] for e in view["enrollments"]] == ["completed"]
        assert [m["status"] for m in view["messages"]] == ["sent", "sent"]
        assert view["stage_history"][0]["to_stage"] == "lead"
        programs = (await client.get(f"{url}/v1/programs", headers=API)).json()
        assert programs[0]["entered"] == 1
        assert programs[0]["messages"] == {"email-1": {"sent": 1}, "case-study": {"sent": 1}}
        funnel = (await client.get(f"{url}/v1/funnel", headers=API)).json()
        assert funnel["leads_by_stage"]["lead"] == 1
        stages = await read_topic(kafka.bootstrap_servers, topics.stages,
                                  until=lambda rs: len(rs) >= 1)
        assert orjson.loads(stages[0].value)["to_stage"] == "lead"

    # `nurture-ops explain` reads the same view over the API and says it in words
    ops = OpsSettings(orchestrator_url=url, orchestrator_token=SecretStr("api-token"))
    text = explain(await asyncio.to_thread(fetch, ops, "lead-1"))
    assert text.splitlines()[0] == "lead lead-1: stage lead"
    assert "(new) -> lead:" in text and "pricing: completed" in text
    assert "pricing/email-1 email: sent" in text and "pricing/case-study email: sent" in text
    with pytest.raises(NotFound):
        await asyncio.to_thread(fetch, ops, "no-such-lead")


async def test_api_auth_enrollment_and_disabled_admin(
        orchestrators: Callable[[], Any]) -> None:
    url = await orchestrators()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/v1/funnel")).status_code == 401
        r = await client.post(f"{url}/v1/leads/lead-9/enrollments", json={"program": "pricing"},
                              headers=API)  # reading leads is not changing enrollments
        assert r.status_code == 401
        r = await client.post(f"{url}/v1/leads/lead-9/enrollments", json={"program": "nope"},
                              headers=ENROLLING)
        assert (r.status_code, r.json()["detail"]) == (404, "no program 'nope'")
        r = await client.post(f"{url}/v1/leads/lead-9/enrollments", json={"program": "pricing"},
                              headers=ENROLLING)
        assert r.status_code == 201
        r = await client.post(f"{url}/v1/leads/lead-9/enrollments", json={"program": "pricing"},
                              headers=ENROLLING)
        assert (r.status_code, r.json()["detail"]) == (409, "not enrolled: already enrolled")
        assert (await client.delete(f"{url}/v1/leads/lead-9/enrollments/pricing",
                                    headers=ENROLLING)).status_code == 200
        view = (await client.get(f"{url}/v1/leads/lead-9", headers=API)).json()
        assert [e["exit_reason"] for e in view["enrollments"]] == ["removed manually"]
        wrong = await client.post(f"{url}/v1/admin/clock/advance", json={"seconds": 1},
                                  headers=API)
        assert wrong.status_code == 401


async def test_two_replicas_share_timers_without_double_firing(
        orchestrators: Callable[[], Any], kafka: KafkaSettings) -> None:
    first, second = await orchestrators(), await orchestrators()
    leads = [f"lead-{i}" for i in range(20)]
    await produce(kafka, [profile(lead) for lead in leads]
                  + [(lead, scored(lead, f"{lead}-e", "/pricing")) for lead in leads])
    async with httpx.AsyncClient() as client:
        async def all_enrolled() -> bool:
            programs = (await client.get(f"{first}/v1/programs", headers=API)).json()
            return bool(programs[0]["entered"] == len(leads))
        await wait_until(all_enrolled, timeout=60, what="every lead enrolled")
        programs = (await client.get(f"{first}/v1/programs", headers=API)).json()
        waiting = programs[0]["waiting_at_step"]  # by step id, not by index
        assert set(waiting) <= set(programs[0]["steps"]) and sum(waiting.values()) == len(leads)
        await client.post(f"{second}/v1/admin/clock/advance", json={"seconds": H + 1},
                          headers=ADMIN)
        records = await read_topic(kafka.bootstrap_servers, Topics(kafka.topic_prefix).dispatch,
                                   until=lambda rs: len(rs) >= len(leads))
        got = commands(records)
        assert sorted(c["lead_id"] for c in got) == sorted(leads)
        assert len({c["message_id"] for c in got}) == len(leads)
        programs = (await client.get(f"{second}/v1/programs", headers=API)).json()
        assert programs[0]["messages"] == {"email-1": {"sent": len(leads)}}
        fired = 0.0
        for url in (first, second):
            text = (await client.get(f"{url}/metrics")).text
            fired += sum(float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith("nurture_orchestrator_timer_lateness_seconds_count"))
        assert fired == len(leads)


async def test_inbound_sms_stop_becomes_an_opt_out_event_for_the_lead(
        database_url: str, schema: str, kafka: KafkaSettings) -> None:
    from services.orchestrator.adapters.twilio import signature

    settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, api_token="api-token",
        public_url="https://nurture.example.com", sms_auth_token="twilio-token",
        timer_poll_seconds=0.1, relay_idle_seconds=0.05)
    phone = "+14155550123"
    await produce(kafka, [("lead-sms", scored_event("lead-sms", "p", "crm.lead_upserted",
                                                    {"phone": phone}))])
    async with serve(create_app(bootstrap(settings, kafka, decider()))) as url, \
            httpx.AsyncClient() as client:
        async def known() -> bool:
            r = await client.get(f"{url}/v1/leads/lead-sms", headers=API)
            return r.status_code == 200
        await wait_until(known, timeout=30, what="lead stored")
        form = {"From": phone, "To": "+15005550006", "Body": " stop please",
                "MessageSid": "SM123"}
        signed = signature("twilio-token", "https://nurture.example.com/v1/webhooks/sms", form)
        forged = await client.post(f"{url}/v1/webhooks/sms", data=form,
                                   headers={"X-Twilio-Signature": "bm9wZQ=="})
        assert forged.status_code == 401
        ok = await client.post(f"{url}/v1/webhooks/sms", data=form,
                               headers={"X-Twilio-Signature": signed})
        assert (ok.status_code, ok.headers["content-type"]) == (200, "text/xml; charset=utf-8")
        records = await read_topic(kafka.bootstrap_servers, Topics(kafka.topic_prefix).events,
                                   until=lambda rs: len(rs) >= 1)
        (event,) = [orjson.loads(r.value) for r in records]
        assert (event["type"], event["subject"], event["data"]) == (
            "sms.opted_out", "lead-sms", {"keyword": "STOP"})
        assert validate_event(event) == []
        helped = await client.post(f"{url}/v1/webhooks/sms", data=form | {"Body": "help"},
                                   headers={"X-Twilio-Signature": signature(
                                       "twilio-token", "https://nurture.example.com/v1/"
                                       "webhooks/sms", form | {"Body": "help"})})
        assert "Reply STOP" in helped.text
