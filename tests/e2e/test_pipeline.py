"""Through the real services: an event posted to ingest is scored by a real faust worker, crosses
a threshold, moves the lead's stage in the orchestrator and produces a dispatch command."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tests.support import (
    ScoringWorker,
    read_topic,
    serve,
    wait_until,
)

KEY = "nk_e2e"
HOT = Program(id="hot-lead", version=1, name="Hot lead", priority=90,
              trigger=Trigger("threshold", model="itest", threshold="mql"),
              steps=(Step("brief-owner", "task", subject="Call this lead", due_seconds=86400),
                     Step("hello", "send", channel="email", template="sales-hello")))


def event(eid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": eid, "source": "https://www.example.com",
            "type": etype, "subject": "lead-e2e", "data": data}


async def test_event_to_score_to_stage_to_command(
        kafka: KafkaSettings, database_url: str, scorer: ScoringWorker) -> None:
    topics = Topics(kafka.topic_prefix)
    schema = f"e2e_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    ingest_settings = IngestSettings(api_keys=[ApiKeyConfig(name="site", sha256=hash_key(KEY))])
    orch_settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, api_token="t", stage_model="itest",
        timer_poll_seconds=0.1, relay_idle_seconds=0.05)
    decider = Decider([HOT], ContactPolicy(caps=(), quiet_hours=None), stage_model="itest")
    async with serve(create_ingest(bootstrap_ingest(ingest_settings, kafka))) as ingest, \
            serve(create_orchestrator(bootstrap(orch_settings, kafka, decider))), \
            httpx.AsyncClient() as client:
        async def ready() -> bool:
            return (await client.get(f"{ingest}/readyz")).status_code == 200
        await wait_until(ready, timeout=30, what="ingest ready")
        batch = [event("p1", "crm.lead_upserted", {"email": "ada@example.com",
                                                   "seniority": "vp"}),
                 event("v1", "web.page_viewed", {"url": "https://x.io/pricing",
                                                 "path": "/pricing"}),
                 event("d1", "web.form_submitted", {"form_id": "demo",
                                                    "form_type": "demo_request"})]
        r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(batch),
                              headers={"Authorization": f"Bearer {KEY}",
                                       "Content-Type": "application/cloudevents-batch+json"})
        assert r.status_code == 202
        records = await read_topic(kafka.bootstrap_servers, topics.dispatch,
                                   until=lambda rs: len(rs) >= 2, timeout=90)
        cmds = [orjson.loads(rec.value) for rec in records]
        assert [(c["channel"], c["step_id"]) for c in cmds] == [("crm_task", "brief-owner"),
                                                                 ("email", "hello")]
        assert cmds[0]["context"]["scores"]["itest"]["total"] == 80.0
        stages = await read_topic(kafka.bootstrap_servers, topics.stages,
                                  until=lambda rs: len(rs) >= 2)
        assert [orjson.loads(s.value)["to_stage"] for s in stages] == ["lead", "mql"]

