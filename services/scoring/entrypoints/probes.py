"""The scoring worker's probes for Kubernetes: /livez and /healthz next to /metrics.

/metrics is served by a thread of its own, so it keeps answering when faust's event loop hangs.
Two heartbeats live on that loop instead: the worker's (`Heartbeat` in `adapters/faust_app.py`, a
service faust starts before the app, so it beats through the first table recovery) and the
app's (a faust timer, `watch`, which faust only starts once the tables are recovered).
/livez fails when the worker's heartbeat is stale (a hung loop), or when records read have
waited minutes for a commit that never comes (the loop beats, but faust's commit hangs: seen
once in the aiokafka producer's flush after a broker restart, docs/reliability.md); /healthz also
while the app has not started or recovers tables after a rebalance. `verdict` and `CommitWatch`
are the pure decisions; `Health` holds the beats; `serve` is the HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

LIVE_PATH, READY_PATH = "/livez", "/healthz"
BEAT_SECONDS = 2.0
# a loop that missed this many seconds of beats is hung (RocksDB flushes and GC stay far below)
STALE_AFTER_SECONDS = 30.0
STUCK_AFTER_SECONDS = 300.0  # the default of NURTURE_SCORING_COMMIT_STUCK_SECONDS
Clock = Callable[[], float]


def verdict(*, now: float, beat: float | None, stale_after: float, started: bool = True,
            recovering: bool = False, stuck_for: float = 0.0,
            stuck_after: float = STUCK_AFTER_SECONDS) -> tuple[bool, str]:
    """(healthy, why): the worker's event loop beats, its commits are not stuck, and (for
    readiness) the app is started and not recovering. `beat` is a monotonic-clock reading,
    None before the first beat."""
    if beat is None:
        return False, "event loop not beating yet"
    if now - beat > stale_after:
        return False, f"event loop stalled: no heartbeat for {now - beat:.0f}s"
    if stuck_for > stuck_after:
        return False, f"commits stuck: records read and not committed for {stuck_for:.0f}s"
    if not started:
        return False, "starting: tables not recovered yet"
    if recovering:
        return False, "recovering tables"
    return True, "ok"


@dataclass
class CommitWatch:
    """Since when records read have been waiting for commits that do not advance. A busy worker
    commits every second (its committed offsets move); an idle one has nothing waiting; a
    worker whose commit hangs has records waiting and offsets that stay put."""

    since: float | None = None
    committed: int | None = None  # the sum of the committed offsets at the last look

    def observe(self, now: float, *, read: Mapping[Any, int], committed: Mapping[Any, int]) -> None:
        """`read`: the last offset read per partition; `committed`: the next offset to read, as
        committed, per partition (faust's monitor)."""
        waiting = any(offset >= committed.get(tp, 0) for tp, offset in read.items())
        total = sum(committed.values())
        if not waiting:
            self.since = None
        elif total != self.committed or self.since is None:
            self.since = now
        self.committed = total

    def stuck_for(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


class Health:
    """The heartbeats, read by the HTTP thread, written on faust's loop."""

    def __init__(self, registry: CollectorRegistry, *, clock: Clock = time.monotonic,
                 stale_after: float = STALE_AFTER_SECONDS,
                 stuck_after: float = STUCK_AFTER_SECONDS) -> None:
        self.clock, self.stale_after, self.stuck_after = clock, stale_after, stuck_after
        self.beat: float | None = None
        self.app_beat: float | None = None
        self.commits = CommitWatch()
        self.app: Any = None  # the faust app, once watch watches it
        Gauge("nurture_scoring_heartbeat_age_seconds",
              "Seconds since the worker's event loop last beat (grows while the loop hangs).",
              registry=registry).set_function(
            lambda: self.clock() - self.beat if self.beat is not None else -1.0)

    def live(self) -> tuple[bool, str]:
        now = self.clock()
        return verdict(now=now, beat=self.beat, stale_after=self.stale_after,
                       stuck_for=self.commits.stuck_for(now), stuck_after=self.stuck_after)

    def ready(self) -> tuple[bool, str]:
        now = self.clock()
        return verdict(now=now, beat=self.beat, stale_after=self.stale_after,
                       started=self.app_beat is not None,
                       recovering=bool(getattr(self.app, "in_recovery", False)),
                       stuck_for=self.commits.stuck_for(now), stuck_after=self.stuck_after)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are no news: no access log."""


def serve(port: int, registry: CollectorRegistry, health: Health,
          addr: str = "0.0.0.0") -> WSGIServer:  # noqa: S104 - a container's metrics port
    """/livez, /healthz (200 or 503 with the reason) and the metrics on every other path, from a
    daemon thread."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in (LIVE_PATH, READY_PATH):
            ok, why = health.live() if path == LIVE_PATH else health.ready()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [why.encode() + b"\n"]
        body: Iterable[bytes] = metrics(environ, start_response)
        return body

    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="nurture-metrics", daemon=True).start()
    return server
