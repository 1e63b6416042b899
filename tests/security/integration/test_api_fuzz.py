"""schemathesis against the served OpenAPI specs of ingest (real Kafka behind it) and the
orchestrator (real PostgreSQL; its Kafka workers off): for generated valid and invalid requests,
with right credentials, no 5xx, no unhandled error, and every response conforms to the spec
(status code declared, content type, body schema, headers). A modest example count per
operation keeps each app near a minute on a shared machine."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from deploy.local.stack import free_port
from services.common.config.settings import KafkaSettings
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
from tests.support import isolated_kafka

EXAMPLES = 25
KEY = f"nk_{uuid.uuid4().hex}"
API, ADMIN = f"api-{uuid.uuid4().hex}", f"admin-{uuid.uuid4().hex}"
# positive_data_acceptance is off: the raw-body endpoints document their bodies loosely (the
# real contract is the JSON Schemas in schemas/, checked by the app), so a request the spec
# allows may still be refused with a documented 4xx. Invalid requests must get a 4xx, any 4xx
# (ingest answers 413 to too many events, which the default list lacks).
CONFIG = schemathesis.Config.from_dict({"checks": {
    "negative_data_rejection": {"expected-statuses": ["4XX"]},
    "positive_data_acceptance": {"enabled": False}}})


@contextmanager
def served(app: Any) -> Iterator[str]:
    """The app under a real uvicorn server in a thread of its own (its own event loop), so the
    synchronous fuzzer can call it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def fuzz(url: str, headers: dict[str, str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert time.monotonic() < deadline, "the app never became ready"
        time.sleep(0.1)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=CONFIG)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises: a spec error
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case[Any]) -> None:
                case.call_and_validate(base_url=url, headers=headers)
            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                continue
            except Exception as exc:  # collect every operation's failure, then report all
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:3000])
    assert failures == [], "\n\n".join(failures)


def status_of(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_ingest_spec_holds_under_fuzzing(kafka_bootstrap: str) -> None:
    kafka: KafkaSettings = asyncio.run(isolated_kafka(kafka_bootstrap))
    app = create_ingest(bootstrap_ingest(IngestSettings(
        api_keys=[ApiKeyConfig(name="fuzz", sha256=hash_key(KEY))],
        email_webhook_secret="fuzz-email-webhook-secret-0123", rate_limit_per_second=0), kafka))
    with served(app) as url:
        fuzz(url, {"Authorization": f"Bearer {KEY}"},
             lambda: status_of(f"{url}/readyz") == 200)


@pytest.fixture
def orch_schema(database_url: str) -> str:
    schema = f"fz_{uuid.uuid4().hex[:10]}"
    upgrade(database_url, schema)
    return schema


def test_orchestrator_spec_holds_under_fuzzing(database_url: str, orch_schema: str) -> None:
    settings_ = OrchestratorSettings(DATABASE_URL=database_url, db_schema=orch_schema,
                                     api_token=API, admin_token=ADMIN)
    decider = Decider([Program(id="manual", version=1, name="Manual", trigger=Trigger("manual"),
                               steps=(Step("wait", "wait", seconds=3600),))],
                      ContactPolicy(caps=(), quiet_hours=None))
    app = create_orchestrator(bootstrap(settings_, KafkaSettings(), decider, run_workers=False))
    with served(app) as url:
        fuzz(url, {"Authorization": f"Bearer {API}"},
             lambda: status_of(f"{url}/readyz") == 200)
