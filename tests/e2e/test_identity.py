"""Identity through the real services (ingest, a faust scoring worker, the orchestrator, on Kafka
and PostgreSQL; docs/identity.md): two CRM leads merged by `crm.leads_merged` end as one lead
with both histories and both scores, once, although the merge is sent twice; an id linked before
any of its events has them counted for the lead; and erasing the lead erases what it absorbed."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from schemas.vocabulary import rfc3339
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from tests.support import (
    ScoringWorker,
    orchestrator_app,
    post_events,
    read_topic,
    serve,
    wait_until,
)

KEY, API = "nk_identity", {"Authorization": "Bearer t"}
RUN = uuid.uuid4().hex[:8]
WINNER, LOSER, EARLY = f"crm-w-{RUN}", f"crm-l-{RUN}", f"anon-{RUN}"


def event(eid: str, etype: str, subject: str, at: float,
          data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"{eid}-{RUN}", "source": "crm", "type": etype,
            "subject": subject, "time": rfc3339(at), "data": data}


def download(eid: str, subject: str, at: float) -> dict[str, Any]:
    return event(eid, "web.content_downloaded", subject, at, {"content_id": eid})


async def test_two_crm_leads_merged_end_as_one_with_both_histories(
        kafka: KafkaSettings, database_url: str, scorer: ScoringWorker) -> None:
    decider = Decider([], ContactPolicy(caps=(), quiet_hours=None), stage_model="itest")
    ingest_settings = IngestSettings(api_keys=[ApiKeyConfig(name="crm", sha256=hash_key(KEY))])
    async with serve(create_ingest(bootstrap_ingest(ingest_settings, kafka))) as ingest, \
            serve(await orchestrator_app(database_url, kafka, decider,
                                         stage_model="itest")) as orch, \
            httpx.AsyncClient(timeout=30) as client:
        async def post(*events: dict[str, Any]) -> None:
            await post_events(client, ingest, KEY, *events)

        async def lead(lead_id: str) -> dict[str, Any]:
            r = await client.get(f"{orch}/v1/leads/{lead_id}", headers=API)
            return r.json() if r.status_code == 200 else {}

        await wait_until(lambda: _ready(client, ingest), timeout=30, what="ingest ready")
        t0 = math.floor(time.time()) - 60
        # the winner: a vp (fit 10) with two downloads (30); the loser: three downloads (30)
        # and an email; apart, neither reaches mql (50)
        await post(event("w0", "crm.lead_upserted", WINNER, t0, {"seniority": "vp"}),
                   download("w1", WINNER, t0), download("w2", WINNER, t0),
                   event("l0", "crm.lead_upserted", LOSER, t0, {"email": "ada@example.com"}),
                   download("l1", LOSER, t0), download("l2", LOSER, t0),
                   download("l3", LOSER, t0),
                   # an id linked before any of its events
                   event("e0", "identity.linked", EARLY, t0, {"lead_id": WINNER}))

        async def both_known() -> bool:
            return bool(await lead(WINNER)) and bool(await lead(LOSER))
        await wait_until(both_known, timeout=90, what="both leads decided")
        merge = {"winner_id": WINNER, "loser_id": LOSER}
        await post(event("m1", "crm.leads_merged", WINNER, t0 + 1, merge))
        await post(event("m1", "crm.leads_merged", WINNER, t0 + 1, merge),  # a retry
                   event("m2", "crm.leads_merged", WINNER, t0 + 2, merge),  # sent again
                   download("e1", EARLY, t0 + 3))

        async def merged() -> bool:
            view = await lead(WINNER)
            return (view.get("scores", {}).get("itest", {}).get("total", 0) >= 69.9
                    and not await lead(LOSER))
        await wait_until(merged, timeout=90, what="one lead with both scores")
        view = await lead(WINNER)
        # fit 10, six downloads: the winner's two, the loser's three and the early id's
        assert view["scores"]["itest"]["total"] == pytest_approx(70.0)
        assert view["profile"]["email"] == "ada@example.com"  # the loser's profile came along
        assert view["stage"] == "mql"
        causes = [h["cause"] for h in view["stage_history"]]
        assert causes.count(f"merged from {LOSER}") == 1
        assert "itest score crossed mql" in causes  # together, they are an mql
        assert len([c for c in causes if c == "first seen"]) == 2  # both histories, one lead
        scored = await read_topic(
            kafka.bootstrap_servers, Topics(kafka.topic_prefix).scored_events,
            until=lambda rs: any(orjson.loads(r.value)["event"]["id"] == f"e1-{RUN}"
                                 for r in rs), timeout=60)
        merges = [orjson.loads(r.value) for r in scored]
        assert sorted(m["event"]["data"]["from"] for m in merges
                      if m["event"]["type"] == "lead.merged" and not m["score"]["duplicate"]) \
            == sorted([LOSER, EARLY])

        # erasing the lead erases the ids it absorbed, in scoring too
        r = await client.delete(f"{orch}/v1/leads/{WINNER}", headers=API)
        assert r.status_code in (200, 202, 204), r.text

        def erased(records: list[Any]) -> set[str]:
            return {orjson.loads(r.value)["score"]["lead_id"] for r in records
                    if orjson.loads(r.value)["event"]["type"] == "lead.erased"}
        scored = await read_topic(
            kafka.bootstrap_servers, Topics(kafka.topic_prefix).scored_events,
            until=lambda rs: len(erased(rs)) == 3, timeout=60)
        assert erased(scored) == {WINNER, LOSER, EARLY}


async def _ready(client: httpx.AsyncClient, ingest: str) -> bool:
    return (await client.get(f"{ingest}/readyz")).status_code == 200


def pytest_approx(value: float) -> Any:
    return pytest.approx(value, abs=0.05)
