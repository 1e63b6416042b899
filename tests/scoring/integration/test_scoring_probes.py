"""The real scoring worker (a subprocess, the real broker) answers the chart's probes: /livez and
/healthz turn 200 once its event loop beats and its tables are recovered, next to /metrics."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from deploy.local.stack import free_port
from services.scoring.entrypoints.probes import LIVE_PATH, READY_PATH
from tests.support import ScoringWorker, isolated_kafka, wait_until

MODEL = """\
id: probes
version: 1
half_life: 30d
thresholds: {mql: 50}
engagement:
  - id: download
    on: web.content_downloaded
    points: 10
"""


async def test_the_worker_reports_live_and_ready_beside_its_metrics(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    kafka = await isolated_kafka(kafka_bootstrap, partitions=2)
    (tmp_path / "probes.yaml").write_text(MODEL)
    port = free_port()
    worker = ScoringWorker({
        **os.environ, "NURTURE_SCORING_STORE": "memory",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NURTURE_TOPIC_PREFIX": kafka.topic_prefix,
        "NURTURE_SCORING_MODELS": str(tmp_path / "probes.yaml"),
        "NURTURE_SCORING_STATE_DIR": str(tmp_path / "state"),
        "NURTURE_SCORING_METRICS_PORT": str(port),
        "NURTURE_SCORING_SESSION_TIMEOUT_SECONDS": "6",
        "NURTURE_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"}, tmp_path / "worker.log")
    worker.start()
    base = f"http://127.0.0.1:{port}"
    try:
        await worker.ready()
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            async def healthy() -> bool:
                live, ready = await client.get(LIVE_PATH), await client.get(READY_PATH)
                return (live.status_code, ready.status_code) == (200, 200)

            await wait_until(healthy, timeout=60, what="/livez and /healthz to answer 200")
            assert (await client.get(READY_PATH)).text == "ok\n"
            metrics = (await client.get("/metrics")).text
        assert "nurture_scoring_heartbeat_age_seconds" in metrics
        assert "nurture_scoring_events_total" in metrics or "nurture_scoring_table_leads" \
            in metrics
    finally:
        worker.stop()
