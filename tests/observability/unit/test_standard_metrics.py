"""What an operator expects on any service's `/metrics`, besides the service's own metrics: the
standard process and Python collectors, `nurture_build_info{version, revision}`, and no
`_created` series."""

from __future__ import annotations

import re
from importlib import metadata

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.config.settings import KafkaSettings
from services.common.observability.metrics import REVISION_VARIABLE, exposition, service_registry
from services.ingest.adapters.publisher import FakePublisher
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings
from tests.observability.catalogue import registries
from tests.observability.unit.test_metric_catalogue import exercise


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(text)}


async def ingest_metrics() -> str:
    """`GET /metrics` of the real ingest app, built by its bootstrap."""
    settings = IngestSettings(api_keys=[ApiKeyConfig(name="k", sha256=hash_key("nk_k"))])
    app = create_app(bootstrap(settings, KafkaSettings(), publisher=FakePublisher()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ingest") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_a_service_exposes_process_and_python_metrics() -> None:
    found = families(await ingest_metrics())
    for name in ("process_cpu_seconds", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds", "python_info",
                 "python_gc_objects_collected"):
        assert found.get(name), name
    (labels, _), = found["python_info"]
    assert labels["implementation"] == "CPython"


async def test_build_info_names_the_version_and_revision(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REVISION_VARIABLE, "0123abc")
    found = families(await ingest_metrics())
    assert found["nurture_build_info"] == [
        ({"version": metadata.version("nurture"), "revision": "0123abc"}, 1.0)]


def test_build_info_without_a_revision_says_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REVISION_VARIABLE, raising=False)
    body, _ = exposition(service_registry())
    (labels, value), = families(body.decode())["nurture_build_info"]
    assert (labels["revision"], value) == ("unknown", 1.0)


@pytest.mark.parametrize("service", ["ingest", "scoring", "orchestrator", "dispatch"])
def test_no_created_series(service: str) -> None:
    registry = exercise(registries()[service])  # every counter and histogram has a sample
    body, _ = exposition(registry)
    text = body.decode()
    assert re.search(r"_total ", text) and re.search(r"_bucket\{", text)  # there are some
    assert not re.findall(r"^\w+_created[ {]", text, flags=re.MULTILINE)
