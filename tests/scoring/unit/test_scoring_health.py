"""The scoring worker's probes: the staleness decision, and the real HTTP server (in process, on a
free port) answering /livez, /healthz and /metrics from the heartbeats of a real faust app (built,
not started) and a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.local.stack import free_port
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.scoring.adapters.faust_app import create_app, watch
from services.scoring.entrypoints.probes import (
    LIVE_PATH,
    READY_PATH,
    STALE_AFTER_SECONDS,
    CommitWatch,
    Health,
    serve,
    verdict,
)
from services.scoring.metrics import ScoringMetrics
from services.scoring.service_layer.handlers import Processor
from services.scoring.settings import ScoringSettings


def test_a_fresh_heartbeat_is_healthy_and_a_stale_one_is_not() -> None:
    assert verdict(now=100.0, beat=95.0, stale_after=30.0) == (True, "ok")
    assert verdict(now=130.0, beat=100.0, stale_after=30.0)[0] is True  # at the limit
    ok, why = verdict(now=131.0, beat=100.0, stale_after=30.0)
    assert not ok and "stalled" in why and "31s" in why
    assert verdict(now=0.0, beat=None, stale_after=30.0) == (False, "event loop not beating yet")


def test_readiness_also_needs_a_started_app_that_is_not_recovering() -> None:
    assert verdict(now=1.0, beat=1.0, stale_after=30.0, started=False)[1].startswith("starting")
    assert verdict(now=1.0, beat=1.0, stale_after=30.0, recovering=True) == (
        False, "recovering tables")
    # a hung loop is reported as such, whatever the app's state
    assert "stalled" in verdict(now=99.0, beat=1.0, stale_after=30.0, started=False,
                                recovering=True)[1]


def test_commits_stuck_for_longer_than_allowed_fail_liveness() -> None:
    assert verdict(now=1.0, beat=1.0, stale_after=30.0, stuck_for=300.0,
                   stuck_after=300.0) == (True, "ok")
    ok, why = verdict(now=1.0, beat=1.0, stale_after=30.0, stuck_for=301.0, stuck_after=300.0)
    assert not ok and why == "commits stuck: records read and not committed for 301s"


def test_the_commit_watch_tells_a_stuck_commit_from_a_busy_or_an_idle_worker() -> None:
    watch = CommitWatch()
    watch.observe(0.0, read={"p0": 9}, committed={"p0": 5})  # records wait for a commit
    watch.observe(1.0, read={"p0": 19}, committed={"p0": 10})  # busy: commits advance
    assert watch.stuck_for(1.0) == 0.0
    watch.observe(2.0, read={"p0": 19}, committed={"p0": 20})  # idle: all committed
    assert watch.stuck_for(400.0) == 0.0
    watch.observe(3.0, read={"p0": 29, "p1": 0}, committed={"p0": 20})  # p1 never committed
    watch.observe(4.0, read={"p0": 39, "p1": 0}, committed={"p0": 20})  # ... nor p0 any more
    watch.observe(300.0, read={"p0": 49, "p1": 0}, committed={"p0": 20})
    assert watch.stuck_for(303.0) == 300.0  # stuck since the first look without progress
    watch.observe(304.0, read={"p0": 49, "p1": 0}, committed={"p0": 50, "p1": 1})
    assert watch.stuck_for(304.0) == 0.0  # the commit came through


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probes() -> Iterator[tuple[str, Health, Clock, Any]]:
    registry = new_registry()
    kafka = KafkaSettings(NURTURE_TOPIC_PREFIX="health.")  # type: ignore[call-arg]
    # the app's own metrics on another registry: its table-size gauge would open the table's
    # store (and an event loop) when scraped, and the app is never started here
    app = create_app(ScoringSettings(), kafka, Processor([], Topics("health.")),
                     ScoringMetrics(new_registry()), partitions=3)
    clock = Clock()
    health = Health(registry, clock=clock)
    watch(health, app)
    port = free_port()
    server = serve(port, registry, health, addr="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}", health, clock, app
    finally:
        server.shutdown()
        server.server_close()


def test_the_probes_follow_the_heartbeats(probes: tuple[str, Health, Clock, Any]) -> None:
    base, health, clock, app = probes

    def status(path: str) -> int:
        return httpx.get(base + path, timeout=10).status_code

    assert (status(LIVE_PATH), status(READY_PATH)) == (503, 503)  # nothing beat yet
    health.beat = clock.now  # the worker's loop beats: alive, the tables not recovered yet
    assert (status(LIVE_PATH), status(READY_PATH)) == (200, 503)
    assert "tables not recovered" in httpx.get(base + READY_PATH, timeout=10).text
    # watch() registered the app's heartbeat as a faust timer (run once tables are recovered)
    assert len([t for t in app._app_tasks if "app_heartbeat" in t.__qualname__]) == 1
    health.app_beat = clock.now  # the app's timer ran: recovered and started
    assert (status(LIVE_PATH), status(READY_PATH)) == (200, 200)
    app.in_recovery = True  # a rebalance: faust recovers the new partitions' tables
    assert (status(LIVE_PATH), status(READY_PATH)) == (200, 503)
    app.in_recovery = False
    clock.now += STALE_AFTER_SECONDS + 1  # the loop hangs: no beat any more
    assert (status(LIVE_PATH), status(READY_PATH)) == (503, 503)
    assert "stalled" in httpx.get(base + LIVE_PATH, timeout=10).text
    # /metrics is still served (by the thread), with the heartbeat's age
    metrics = httpx.get(base + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert f"nurture_scoring_heartbeat_age_seconds {STALE_AFTER_SECONDS + 1}" in metrics.text
    health.beat = clock.now  # beating again; but its commits hang
    health.commits.since = clock.now - health.stuck_after - 1
    assert (status(LIVE_PATH), status(READY_PATH)) == (503, 503)
    assert "commits stuck" in httpx.get(base + LIVE_PATH, timeout=10).text
