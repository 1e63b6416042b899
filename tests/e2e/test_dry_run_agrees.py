"""The dry run tells the truth: the shipped sample's first leads, retimed to the last minutes,
go through the real services (ingest, a faust scoring worker with the shipped models, the
orchestrator with the shipped programs, on Kafka and PostgreSQL) and through
`nurture-orchestrator simulate`; both enroll the same leads in the same programs, score-triggered
ones included, and leave the leads in the same stages.

Quiet hours are off on both sides: the services decide seconds after the dry run's event times,
and a quiet-hours boundary in between would be a difference of clocks, not of decisions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from schemas.vocabulary import event_epoch, rfc3339
from services.common.config.settings import KafkaSettings
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.adapters.program_files import load_policy, load_programs
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.entrypoints.simulate import simulate
from services.orchestrator.settings import OrchestratorSettings
from tests.support import ROOT, isolated_kafka, scoring_worker, serve, wait_until

KEY, API = "nk_dry_run", {"Authorization": "Bearer t"}
LEADS = 20


def decider() -> Decider:
    policy = load_policy(ROOT / "config" / "contact-policy.yaml")
    return Decider(load_programs(sorted((ROOT / "config" / "programs").glob("*.yaml"))),
                   dataclasses.replace(policy, quiet_hours=None), stage_model="b2b")


def small_file(path: Path) -> list[dict[str, Any]]:
    """The sample's events of its first LEADS leads, in order, squeezed into the last ten
    minutes (so that no timer of the programs comes due while the services run)."""
    events, leads = [], set[str]()
    for line in (ROOT / "samples" / "events.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        if event["subject"] not in leads and len(leads) < LEADS:
            leads.add(event["subject"])
        if event["subject"] in leads:
            events.append(event)
    first, last = event_epoch(events[0]["time"]), event_epoch(events[-1]["time"])
    end = time.time() - 30
    for event in events:
        share = (event_epoch(event["time"]) - first) / (last - first)
        event["time"] = rfc3339(end - 600 + 570 * share)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return events


async def test_the_dry_run_enrolls_as_the_services_do(
        kafka_bootstrap: str, database_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    kafka: KafkaSettings = await isolated_kafka(kafka_bootstrap)
    events = small_file(tmp_path / "small.jsonl")
    schema = f"dry_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL=database_url, db_schema=schema, api_token="t", stage_model="b2b",
        timer_poll_seconds=0.2, relay_idle_seconds=0.05)
    ingest_settings = IngestSettings(api_keys=[ApiKeyConfig(name="site", sha256=hash_key(KEY))])
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    async with scoring_worker(kafka, tmp_path, ROOT / "config" / "scoring"), \
            serve(create_ingest(bootstrap_ingest(ingest_settings, kafka))) as ingest, \
            serve(create_orchestrator(bootstrap(settings, kafka, decider()))) as orch, \
            httpx.AsyncClient(timeout=30) as client:
        for i in range(0, len(events), 100):
            r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(events[i:i + 100]),
                                  headers={"Authorization": f"Bearer {KEY}", "Content-Type":
                                           "application/cloudevents-batch+json"})
            assert r.status_code == 202, r.text

        async def all_decided() -> bool:
            async with engine.connect() as conn:
                done = await conn.scalar(text("SELECT count(*) FROM processed_events"))
            return done == len(events)
        await wait_until(all_decided, timeout=180, what="every event decided")
        programs = (await client.get(f"{orch}/v1/programs", headers=API)).json()
        funnel = (await client.get(f"{orch}/v1/funnel", headers=API)).json()
    await engine.dispose()

    assert simulate(decider(), str(tmp_path / "small.jsonl"),
                    scoring=[str(ROOT / "config" / "scoring")], tail_days=0, as_json=True,
                    quiet=True) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["events"] == len(events) and dry["bad_lines"] == 0
    real = {p["id"]: p["entered"] for p in programs}
    assert {pid: p["enrolled"] for pid, p in dry["programs"].items()} == real
    assert dry["programs"]["mql-accelerator"]["enrolled"] > 0  # triggered by a score
    stages = {s: n for s, n in funnel["leads_by_stage"].items() if n}
    assert dry["leads_by_stage"] == stages
