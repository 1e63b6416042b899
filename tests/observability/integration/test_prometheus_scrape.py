"""A real Prometheus server (Debian's binary) scrapes the four real services while an event
goes through them — ingest, the faust scoring worker, the orchestrator and dispatch with a real
SMTP sink — and finds the pipeline and funnel metrics through its HTTP API; the alert rules
load into it; and `promtool check metrics` accepts every service's /metrics output."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from deploy.local.stack import free_port
from services.common.config.settings import KafkaSettings
from services.common.tracking import TrackingSettings
from services.dispatch.adapters.migrate import upgrade as upgrade_dispatch
from services.dispatch.bootstrap import bootstrap as bootstrap_dispatch
from services.dispatch.entrypoints.http.app import create_app as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.adapters.migrate import upgrade as upgrade_orchestrator
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from services.orchestrator.entrypoints.http.app import create_app as create_orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tests.dispatch.integration.dispatch_harness import SmtpSink
from tests.observability.catalogue import ALERTS, prometheus, promtool
from tests.scoring.integration.test_worker import MODEL
from tests.support import ScoringWorker, isolated_kafka, scoring_worker, serve, wait_until

KEY = "nk_observability"
HOT = Program(id="hot-lead", version=1, name="Hot lead", priority=90,
              trigger=Trigger("threshold", model="itest", threshold="mql"),
              steps=(Step("hello", "send", channel="email", template="pricing-followup"),))
# series the Prometheus server must hold once one lead went through; (query, job)
EXPECTED = [
    ('nurture_ingest_events_accepted_total{type="web.form_submitted"}', "ingest"),
    ('nurture_scoring_events_total{outcome="scored"}', "scoring"),
    ('nurture_orchestrator_events_total{outcome="processed"}', "orchestrator"),
    ('nurture_orchestrator_leads{stage="mql"} > 0', "orchestrator"),
    ('nurture_orchestrator_conversions_total{to_stage="mql"}', "orchestrator"),
    ('nurture_orchestrator_enrollments_total{program="hot-lead", status="entered"}',
     "orchestrator"),
    ('nurture_orchestrator_message_events_total{program="hot-lead", event="sent"}',
     "orchestrator"),
    ("nurture_consumer_lag_records", "scoring"),
    ("nurture_consumer_lag_records", "orchestrator"),
    ("nurture_consumer_lag_records", "dispatch"),
    ("nurture_outbox_pending_records", "orchestrator"),
    ("nurture_outbox_pending_records", "dispatch"),
    ('nurture_dispatch_messages_total{program="hot-lead", step="hello", outcome="sent"}',
     "dispatch"),
    ("nurture_end_to_end_latency_seconds_count > 0", "dispatch"),
]


def event(eid: str, etype: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": eid, "source": "https://www.example.com",
            "type": etype, "subject": f"lead-obs-{uuid.uuid4().hex[:6]}", "data": data}


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def scorer(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[ScoringWorker]:
    async with scoring_worker(kafka, tmp_path, MODEL) as worker:
        yield worker


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    await sink.start()
    yield sink
    await sink.stop()


@contextmanager
def prometheus_server(tmp_path: Path, targets: dict[str, str]) -> Iterator[str]:
    """The Prometheus binary scraping `targets` (job → host:port) every second."""
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": ["alerts.yml"],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                 for job, target in targets.items()]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(prometheus()), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


async def query(client: httpx.AsyncClient, prom: str, expr: str) -> list[dict[str, Any]]:
    try:
        r = await client.get(f"{prom}/api/v1/query", params={"query": expr})
    except httpx.TransportError:  # not listening yet
        return []
    if r.status_code != 200:
        return []
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


async def test_prometheus_scrapes_the_running_services(
        kafka: KafkaSettings, database_url: str, scorer: ScoringWorker, smtp: SmtpSink,
        tmp_path: Path) -> None:
    o_schema, d_schema = f"obs_o_{uuid.uuid4().hex[:8]}", f"obs_d_{uuid.uuid4().hex[:8]}"
    # one after the other: Alembic's context is process-global
    await asyncio.to_thread(upgrade_orchestrator, database_url, o_schema)
    await asyncio.to_thread(upgrade_dispatch, database_url, d_schema)
    ingest_app = create_ingest(bootstrap_ingest(
        IngestSettings(api_keys=[ApiKeyConfig(name="site", sha256=hash_key(KEY))]), kafka))
    orchestrator_app = create_orchestrator(bootstrap(
        OrchestratorSettings(  # type: ignore[call-arg]
            DATABASE_URL=database_url, db_schema=o_schema, api_token="t", stage_model="itest",
            timer_poll_seconds=0.1, relay_idle_seconds=0.05),
        kafka, Decider([HOT], ContactPolicy(caps=(), quiet_hours=None), stage_model="itest")))
    dispatch_app = create_dispatch(bootstrap_dispatch(
        DispatchSettings(  # type: ignore[call-arg]
            DATABASE_URL=database_url, db_schema=d_schema, smtp_port=smtp.port,
            poll_seconds=0.05, relay_idle_seconds=0.05),
        kafka, TrackingSettings(secret="observability-tracking-secret-0123456789")))  # type: ignore[arg-type]
    async with serve(ingest_app) as ingest, serve(orchestrator_app) as orchestrator, \
            serve(dispatch_app) as dispatch, httpx.AsyncClient(timeout=30) as client:
        urls = {"ingest": ingest, "scoring": f"http://127.0.0.1:{scorer.metrics_port}",
                "orchestrator": orchestrator, "dispatch": dispatch}

        async def ready() -> bool:
            return all([(await client.get(f"{urls[s]}/readyz")).status_code == 200
                        for s in ("ingest", "orchestrator", "dispatch")])
        await wait_until(ready, timeout=90, what="services ready")
        lead = event("p1", "crm.lead_upserted", {"email": "ada@example.com",
                                                  "first_name": "Ada", "seniority": "vp"})
        batch = [lead,
                 {**event("v1", "web.page_viewed", {"url": "https://x.io/pricing",
                                                    "path": "/pricing"}),
                  "subject": lead["subject"]},
                 {**event("d1", "web.form_submitted", {"form_id": "demo",
                                                       "form_type": "demo_request"}),
                  "subject": lead["subject"]}]
        r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(batch),
                              headers={"Authorization": f"Bearer {KEY}",
                                       "Content-Type": "application/cloudevents-batch+json"})
        assert r.status_code == 202, r.text
        await wait_until(lambda: len(smtp.received) >= 1, timeout=180, what="the email sent")

        for service, url in urls.items():  # promtool's lint of each real exposition
            body = (await client.get(f"{url}/metrics")).text
            assert "nurture_" in body, service
            lint = await asyncio.to_thread(  # the services share this event loop
                subprocess.run, [str(promtool()), "check", "metrics"], input=body,
                capture_output=True, text=True, check=False, timeout=60)
            assert lint.returncode == 0, (service, lint.stdout + lint.stderr)

        targets = {job: url.removeprefix("http://") for job, url in urls.items()}
        with prometheus_server(tmp_path, targets) as prom:
            async def all_up() -> bool:
                up = await query(client, prom, "up == 1")
                return {s["metric"]["job"] for s in up} == set(targets)
            await wait_until(all_up, timeout=120, what="every target up in Prometheus")
            for expr, job in EXPECTED:
                async def found(expr: str = expr, job: str = job) -> bool:
                    return any(s["metric"].get("job") == job
                               for s in await query(client, prom, expr))
                await wait_until(found, timeout=120, what=f"{expr} from {job} in Prometheus")
            rules = (await client.get(f"{prom}/api/v1/rules")).json()["data"]["groups"]
            loaded = {r["name"] for g in rules for r in g["rules"]}
            assert {"NurtureConsumerLagGrowing", "NurtureDeadLetters", "NurtureSendFailures",
                    "NurtureTimersLate"} <= loaded
            assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
