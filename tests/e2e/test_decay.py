"""Scores that age on their own, through the real services (ingest, a faust scoring worker,
the orchestrator, dispatch and an SMTP peer, on Kafka and PostgreSQL): a lead reaches MQL and
then does nothing; moving the orchestrator's clock 90 days makes its score read below MQL and
its stage move back, with the reason, at the time computed from the half-life, and a program
that triggers on the downward crossing emails the lead. An event in between moves the
crossing: nothing happens at the time first computed."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from schemas.vocabulary import rfc3339
from services.common.clock import SharedClock
from services.common.config.settings import ClockSettings, KafkaSettings
from services.ingest.bootstrap import bootstrap as bootstrap_ingest
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app as create_ingest
from services.ingest.settings import ApiKeyConfig, IngestSettings
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import Program, Step, Trigger
from tests.dispatch.integration.dispatch_harness import SmtpSink, dispatch_service
from tests.support import ScoringWorker, orchestrator_app, post_events, serve, wait_until

KEY, API, ADMIN = "nk_decay", {"Authorization": "Bearer t"}, {"Authorization": "Bearer a"}
D = 86400.0
HALF = 30 * D  # the itest model's half-life; fit 10 (senior), mql at 50
LEAD = f"lead-decay-{uuid.uuid4().hex[:8]}"
FIT = f"{LEAD}-fit"  # fit 10 and one download: 20 points
BUSY = f"{LEAD}-busy"  # no fit, three downloads: 30 points, all of which fade
COOLING = Program(id="cooling", version=1, name="Cooling off",
                  trigger=Trigger("threshold", model="itest", threshold="mql",
                                  direction="down"),
                  steps=(Step("still-there", "send", channel="email", template="cooling"),))


def event(eid: str, etype: str, at: float, data: dict[str, Any],
          lead: str = LEAD) -> dict[str, Any]:
    return {"specversion": "1.0", "id": eid, "source": "https://www.example.com",
            "type": etype, "subject": lead, "time": rfc3339(at), "data": data}


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = SmtpSink()
    await server.start()
    yield server
    await server.stop()


async def test_a_quiet_lead_cools_below_mql_when_the_clock_moves(
        kafka: KafkaSettings, database_url: str, scorer: ScoringWorker, sink: SmtpSink,
        tmp_path: Path) -> None:
    templates = tmp_path / "templates" / "cooling"
    templates.mkdir(parents=True)
    (templates / "subject.txt").write_text("Still there, {{ first_name }}?")
    (templates / "body.txt").write_text("We have not heard from you in a while.")
    decider = Decider([COOLING], ContactPolicy(caps=(), quiet_hours=None), stage_model="itest")
    ingest_settings = IngestSettings(api_keys=[ApiKeyConfig(name="site", sha256=hash_key(KEY))])
    async with serve(create_ingest(bootstrap_ingest(ingest_settings, kafka))) as ingest, \
            serve(await orchestrator_app(database_url, kafka, decider,
                                         stage_model="itest")) as orch, \
            dispatch_service(database_url, kafka, smtp_port=sink.port,
                             templates=str(tmp_path / "templates")), \
            httpx.AsyncClient(timeout=30) as client:
        async def post(*events: dict[str, Any]) -> None:
            await post_events(client, ingest, KEY, *events)

        async def lead() -> dict[str, Any]:
            r = await client.get(f"{orch}/v1/leads/{LEAD}", headers=API)
            return r.json() if r.status_code == 200 else {}

        async def advance(seconds: float) -> float:
            r = await client.post(f"{orch}/v1/admin/clock/advance", json={"seconds": seconds},
                                  headers=ADMIN)
            assert r.status_code == 200, r.text
            return float(r.json()["now"])

        async def ready() -> bool:
            return (await client.get(f"{ingest}/readyz")).status_code == 200
        await wait_until(ready, timeout=30, what="ingest ready")

        # reaches MQL: fit 10 + five downloads (50 points) = 60
        t0 = math.floor(time.time())
        await post(event("p1", "crm.lead_upserted", t0, {
            "email": "ada@example.com", "first_name": "Ada", "seniority": "vp"}),
            *(event(f"d{i}", "web.content_downloaded", t0, {"content_id": f"c{i}"})
              for i in range(5)))

        await post(event("f1", "crm.lead_upserted", t0, {"seniority": "vp"}, FIT),
                   event("f2", "web.content_downloaded", t0, {"content_id": "c"}, FIT),
                   *(event(f"b{i}", "web.content_downloaded", t0, {"content_id": f"c{i}"}, BUSY)
                     for i in range(3)))

        async def ranked() -> list[str]:
            r = await client.get(f"{orch}/v1/leads", headers=API, params={"model": "itest"})
            assert r.status_code == 200, r.text
            return [x["lead_id"] for x in r.json()["leads"]]

        async def in_mql() -> bool:
            return (await lead()).get("stage") == "mql" and len(await ranked()) == 3
        await wait_until(in_mql, timeout=90, what="the lead in mql")
        assert await ranked() == [LEAD, BUSY, FIT]  # 60, 30, 20 points
        first = (await lead())["scores"]["itest"]["next_crossing"]
        assert first["threshold"] == "mql" and first["direction"] == "down"
        # 50 engagement points reach the 40 that leave the total at 50 in log2(50/40) half-lives
        assert first["at"] == math.floor(t0 + HALF * math.log2(50 / 40)) + 1

        # an event in between (one more download) moves the crossing later
        await post(event("d5", "web.content_downloaded", t0 + 1, {"content_id": "c5"}))
        async def moved() -> bool:
            nxt = (await lead()).get("scores", {}).get("itest", {}).get("next_crossing") or {}
            return nxt.get("at") != first["at"]
        await wait_until(moved, timeout=60, what="the crossing moved")
        crossing = (await lead())["scores"]["itest"]["next_crossing"]["at"]
        # the five downloads decayed for a second, plus ten points, fall to 40 (within a second)
        assert crossing == pytest.approx(t0 + 1 + HALF * math.log2(60 / 40), abs=2.0)

        # past the first time, before the new one: still above mql, still mql
        now = await advance(12 * D)
        view = await lead()
        assert view["stage"] == "mql"
        expected = 10 + 60 * 2 ** (-(now - (t0 + 1)) / HALF)
        assert view["scores"]["itest"]["total"] == pytest.approx(expected, abs=0.02)
        assert view["scores"]["itest"]["above"] == ["mql"]

        # 90 days after the last event: decay took it below mql at the computed time
        now = await advance(78 * D)

        async def cooled() -> bool:
            return (await lead()).get("stage") == "lead"
        await wait_until(cooled, timeout=90, what="the lead back to lead")
        view = await lead()
        drop = view["stage_history"][-1]
        assert (drop["from_stage"], drop["to_stage"], drop["cause"]) == (
            "mql", "lead", "itest score fell below mql as engagement faded")
        assert datetime.fromisoformat(str(drop["at"])).timestamp() == \
            pytest.approx(crossing, abs=1.0)
        assert [h["to_stage"] for h in view["stage_history"]] == ["lead", "mql", "lead"]
        score = view["scores"]["itest"]
        assert score["total"] == pytest.approx(10 + 60 * 2 ** (-(now - t0 - 1) / HALF),
                                               abs=0.05)
        assert score["above"] == [] and score["next_crossing"] is None
        # the sales ranking reads the same decayed scores: 17.5, 11.25 (fit stays), 3.75
        assert await ranked() == [LEAD, FIT, BUSY]
        at = (await client.get(f"{orch}/v1/leads/{LEAD}", headers=API,
                               params={"at": rfc3339(t0 + 1 + HALF)})).json()
        assert at["scores"]["itest"]["total"] == pytest.approx(40.0, abs=0.05)

        # the program that triggers on the downward crossing emailed the lead
        await wait_until(lambda: len(sink.received) >= 1, timeout=60, what="the email")
        (mail,) = sink.received
        assert (mail["To"], mail["Subject"]) == ("Ada <ada@example.com>", "Still there, Ada?")
        enrolled = [(e["program_id"], e["status"]) for e in view["enrollments"]]
        assert enrolled == [("cooling", "completed")]
        assert datetime.now(UTC).timestamp() < t0 + D  # all of it without waiting for days


async def test_ingest_stamps_events_with_the_orchestrators_clock(
        kafka: KafkaSettings, database_url: str, scorer: ScoringWorker) -> None:
    """One clock: with the orchestrator's clock moved 195 days ahead, an event posted without a
    `time` is stamped by ingest with that clock (`NURTURE_CLOCK_URL`), so the lead it creates is
    active now, not 195 days ago."""
    decider = Decider([], ContactPolicy(caps=(), quiet_hours=None), stage_model="itest")
    ingest_settings = IngestSettings(api_keys=[ApiKeyConfig(name="site", sha256=hash_key(KEY))])
    async with serve(await orchestrator_app(database_url, kafka, decider,
                                            stage_model="itest")) as orch, \
            httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{orch}/v1/admin/clock/advance", json={"seconds": 195 * D},
                              headers=ADMIN)
        now = float(r.json()["now"])
        clock = SharedClock(ClockSettings(url=f"{orch}/v1/admin/clock", token=SecretStr("a")))
        app = create_ingest(bootstrap_ingest(ingest_settings, kafka, clock=clock))
        async with serve(app) as ingest:
            async def ready() -> bool:
                return (await client.get(f"{ingest}/readyz")).status_code == 200
            await wait_until(ready, timeout=30, what="ingest ready")
            untimed = {k: v for k, v in event("v1", "web.page_viewed", 0, {
                "url": "https://www.example.com/pricing"}).items() if k != "time"}
            r = await client.post(f"{ingest}/v1/events", content=orjson.dumps(untimed),
                                  headers={"Authorization": f"Bearer {KEY}",
                                           "Content-Type": "application/cloudevents+json"})
            assert r.status_code == 202, r.text

        async def seen() -> dict[str, Any]:
            r = await client.get(f"{orch}/v1/leads/{LEAD}", headers=API)
            return r.json() if r.status_code == 200 else {}
        await wait_until(seen, timeout=60, what="the lead")
        view = await seen()
        first = view["stage_history"][0]
        assert datetime.fromisoformat(str(first["at"])).timestamp() == pytest.approx(now, abs=60)
        assert view["scores"]["itest"]["as_of"] == pytest.approx(now, abs=60)
