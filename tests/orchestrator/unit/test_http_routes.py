"""The API's routers over the in-memory unit of work (bootstrap's `uow` override): the routes
call the handlers and map their errors, with no PostgreSQL or Kafka."""

from __future__ import annotations

import httpx
import orjson

from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.orchestrator.adapters.memory import MemoryStore, MemoryUnitOfWork
from services.orchestrator.bootstrap import bootstrap
from services.orchestrator.entrypoints.http.app import create_app
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator.unit.test_handlers import T0, decider

ENROLLING = {"Authorization": "Bearer enrollment-token"}
API = {"Authorization": "Bearer api-token"}


def client(store: MemoryStore) -> httpx.AsyncClient:
    settings = OrchestratorSettings(  # type: ignore[call-arg]
        DATABASE_URL="postgresql+asyncpg://unused@localhost/unused", api_token="api-token",
        enrollment_token="enrollment-token")
    orch = bootstrap(settings, KafkaSettings(), decider(), run_workers=False,
                     uow=lambda: MemoryUnitOfWork(store, Topics(), clock=lambda: T0))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(orch)),
                             base_url="http://orchestrator")


async def test_enrollment_routes_answer_from_the_handlers() -> None:
    store = MemoryStore()
    async with client(store) as http:
        r = await http.post("/v1/leads/lead-1/enrollments", json={"program": "nope"},
                            headers=ENROLLING)
        assert (r.status_code, r.json()["detail"]) == (404, "no program 'nope'")
        r = await http.post("/v1/leads/lead-1/enrollments", json={"program": "pricing"},
                            headers=ENROLLING)
        assert (r.status_code, r.json()["status"]) == (201, "active")
        r = await http.post("/v1/leads/lead-1/enrollments", json={"program": "pricing"},
                            headers=ENROLLING)
        assert (r.status_code, r.json()["detail"]) == (409, "not enrolled: already enrolled")
        r = await http.delete("/v1/leads/lead-1/enrollments/pricing", headers=ENROLLING)
        assert (r.status_code, r.json()["status"]) == (200, "exited")
        r = await http.delete("/v1/leads/lead-1/enrollments/pricing", headers=ENROLLING)
        assert r.status_code == 404
        r = await http.delete("/v1/leads/lead-1", headers=API)
        assert (r.status_code, r.json()["found"]) == (202, True)
    assert "lead-1" not in store.leads
    (erased,) = [orjson.loads(o.value) for o in store.outbox if o.topic == Topics().events]
    assert erased["type"] == "lead.erased"


async def test_the_routes_keep_their_tokens() -> None:
    async with client(MemoryStore()) as http:
        r = await http.post("/v1/leads/lead-1/enrollments", json={"program": "pricing"},
                            headers=API)
        assert r.status_code == 401
        assert (await http.delete("/v1/leads/lead-1")).status_code == 401
        r = await http.post("/v1/admin/clock/advance", json={"seconds": 1}, headers=API)
        assert r.status_code == 404  # no admin token configured: the endpoint is off


async def test_enroll_refuses_a_lead_id_no_event_could_carry_naming_the_field() -> None:
    """A lead the API creates must be one a dispatch command can name (the `subject` rules):
    otherwise its first send would fail deep in the outbox, not here."""
    store = MemoryStore()
    async with client(store) as http:
        for bad in ("x" * 201, "lead%0A1"):
            r = await http.post(f"/v1/leads/{bad}/enrollments", json={"program": "pricing"},
                                headers=ENROLLING)
            assert r.status_code == 422
            assert r.json()["detail"][0]["loc"] == ["path", "lead_id"]
        r = await http.post(f"/v1/leads/{'x' * 200}/enrollments", json={"program": "pricing"},
                            headers=ENROLLING)
        assert r.status_code == 201
    assert list(store.leads) == ["x" * 200]
