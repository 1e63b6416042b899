"""The fault run's kubelet reads a service's liveness probe as Kubernetes would: a real child
process and a real HTTP probe (the scoring worker's /livez server,
services/scoring/entrypoints/probes.py) whose verdict the test moves."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.chaos.processes import Service
from deploy.local.stack import free_port
from services.common.observability.metrics import new_registry
from services.scoring.entrypoints.probes import Health, serve


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probe() -> Iterator[tuple[str, Health]]:
    health = Health(new_registry(), clock=Clock(), stuck_after=30.0)
    port = free_port()
    server = serve(port, new_registry(), health, addr="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}/livez", health
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_probe_is_reported_with_its_reason(probe: tuple[str, Health],
                                                     tmp_path: Path) -> None:
    url, health = probe
    service = Service("scoring-1", [sys.executable, "-c", "import time; time.sleep(60)"], {},
                      tmp_path / "scoring-1.log", live_url=url)
    assert service.unlive() is None  # not started: nothing to restart
    service.start({})
    try:
        health.beat = health.clock()
        assert service.unlive() is None  # alive and passing
        health.commits.since = health.clock() - 31.0
        assert service.unlive() == "commits stuck: records read and not committed for 31s"
        no_probe = Service("other", service.cmd, {}, tmp_path / "other.log",
                           live_url=f"http://127.0.0.1:{free_port()}/livez")
        no_probe.start({})
        try:
            assert no_probe.unlive() is None  # starting: its probe does not answer yet
        finally:
            no_probe.kill9()
    finally:
        service.kill9()
