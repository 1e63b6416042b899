"""The image, built and run for real: the project's engine (Debian's dockerd, started by
deploy/image.py if none runs), a base from Debian's packages, `docker build`; then every command
as the non-root user on a read-only root filesystem, and ingest and scoring from the image against
the test broker: an event posted to ingest comes out scored. If the engine cannot start, the tests
fail with the reason; they are never skipped."""

from __future__ import annotations

import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from deploy import image
from deploy.local.stack import free_port
from services.common.kafka.topics import Topics
from services.ingest.domain.auth import hash_key
from tests.support import ROOT, isolated_kafka, read_topic, wait_until

SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",  # noqa: S108 - in the container
            "--security-opt", "no-new-privileges", "--user", "10001:10001")
KEY = "nk_image"


@pytest.fixture(scope="session")
def built() -> Iterator[tuple[str, str]]:
    """(DOCKER_HOST, tag) of the image built from this tree."""
    host = image.engine()
    tag = f"nurture:test-{uuid.uuid4().hex[:8]}"
    image.build(host, tag, base=image.base_image(host), revision="test")
    try:
        yield host, tag
    finally:
        image.docker(host, "rmi", "--force", tag, check=False)
        if host in image.STARTED:  # the engine this session started, stopped again
            image.stop_dockerd()


def run(built: tuple[str, str], *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    host, tag = built
    return image.docker(host, "run", "--rm", "--network", "none", *HARDENED, tag, *args,
                        check=False, timeout=120, **kw)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_answers_help_as_non_root_on_a_read_only_root(
        built: tuple[str, str], script: str) -> None:
    proc = run(built, script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: nurture-")


def test_the_image_carries_its_labels_and_no_pip(built: tuple[str, str]) -> None:
    host, tag = built
    labels = orjson.loads(image.docker(host, "inspect", "--format",
                                       "{{json .Config.Labels}}", tag).stdout)
    assert labels["org.opencontainers.image.revision"] == "test"
    assert labels["org.opencontainers.image.version"] == tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run(built, "id", "-u").stdout.strip() == "10001"
    assert run(built, "python", "-m", "pip", "--version").returncode != 0


def container(built: tuple[str, str], name: str, env: dict[str, str], *cmd: str) -> None:
    host, tag = built
    pairs = [arg for k, v in env.items() for arg in ("--env", f"{k}={v}")]
    image.docker(host, "run", "--detach", "--name", name, "--network", "host", *HARDENED,
                 *pairs, tag, *cmd)


async def test_ingest_and_scoring_from_the_image_against_the_test_broker(
        built: tuple[str, str], kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "NURTURE_TOPIC_PREFIX": kafka.topic_prefix, "NURTURE_LOG_FORMAT": "text"}
    port, suffix = free_port(), uuid.uuid4().hex[:8]
    names = (f"ingest-{suffix}", f"scoring-{suffix}")
    try:
        container(built, names[0], env | {
            "NURTURE_INGEST_PORT": str(port),
            "NURTURE_INGEST_API_KEYS": orjson.dumps([{"name": "t", "sha256": hash_key(KEY)}])
            .decode()}, "nurture-ingest", "serve")
        container(built, names[1], env | {
            "NURTURE_SCORING_METRICS_PORT": str(free_port()),
            "NURTURE_SCORING_APP_ID": f"nurture-scoring-{suffix}"}, "nurture-scoring", "worker")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False
            await wait_until(ready, timeout=60, what="ingest in the image to be ready")
            event = {"specversion": "1.0", "id": "img-1", "source": "https://www.example.com",
                     "type": "web.page_viewed", "subject": "lead-img",
                     "data": {"url": "https://www.example.com/pricing", "path": "/pricing"}}
            r = await client.post("/v1/events", content=orjson.dumps(event), headers={
                "Authorization": f"Bearer {KEY}", "Content-Type": "application/cloudevents+json"})
            assert r.status_code == 202, r.text
        scored = await read_topic(kafka.bootstrap_servers, Topics(kafka.topic_prefix).scored_events,
                                  until=lambda rs: len(rs) >= 1, timeout=90)
        value = orjson.loads(scored[0].value)
        assert (value["event"]["id"], value["score"]["lead_id"]) == ("img-1", "lead-img")
    finally:
        host = built[0]
        logs = [image.docker(host, "logs", "--tail", "30", n, check=False).stderr for n in names]
        for name in names:
            image.docker(host, "rm", "--force", name, check=False)
        print("\n".join(logs))  # shown by pytest when the test fails
