"""The scoring worker's health, for Kubernetes probes: /livez and /healthz next to /metrics.

/metrics is served by a thread of its own, so it keeps answering when faust's event loop hangs.
Two heartbeats live on that loop instead: the worker's (a service faust starts before the app,
so it beats through the first table recovery) and the app's (a faust timer, which faust only
starts once the tables are recovered). /livez fails when the worker's heartbeat is stale (a hung
loop); /healthz also while the app has not started or recovers tables after a rebalance.
`verdict` is the pure decision; `Health` holds the beats; `serve` is the HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import mode
from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

LIVE_PATH, READY_PATH = "/livez", "/healthz"
BEAT_SECONDS = 2.0
# a loop that missed this many seconds of beats is hung (RocksDB flushes and GC stay far below)
STALE_AFTER_SECONDS = 30.0
Clock = Callable[[], float]


def verdict(*, now: float, beat: float | None, stale_after: float, started: bool = True,
            recovering: bool = False) -> tuple[bool, str]:
    """(healthy, why): the worker's event loop beats, and (for readiness) the app is started and
    not recovering. `beat` is a monotonic-clock reading, None before the first beat."""
    if beat is None:
        return False, "event loop not beating yet"
    if now - beat > stale_after:
        return False, f"event loop stalled: no heartbeat for {now - beat:.0f}s"
    if not started:
        return False, "starting: tables not recovered yet"
    if recovering:
        return False, "recovering tables"
    return True, "ok"


class Health:
    """The heartbeats, read by the HTTP thread, written on faust's loop."""

    def __init__(self, registry: CollectorRegistry, *, clock: Clock = time.monotonic,
                 stale_after: float = STALE_AFTER_SECONDS) -> None:
        self.clock, self.stale_after = clock, stale_after
        self.beat: float | None = None
        self.app_beat: float | None = None
        self._app: Any = None
        Gauge("nurture_scoring_heartbeat_age_seconds",
              "Seconds since the worker's event loop last beat (grows while the loop hangs).",
              registry=registry).set_function(
            lambda: self.clock() - self.beat if self.beat is not None else -1.0)

    def watch(self, app: Any) -> None:
        """Beat from a timer of the faust `app` (run once its tables are recovered) and read its
        recovery flag."""
        self._app = app

        async def app_heartbeat() -> None:
            self.app_beat = self.clock()

        app.timer(interval=BEAT_SECONDS, name="nurture-health")(app_heartbeat)

    def live(self) -> tuple[bool, str]:
        return verdict(now=self.clock(), beat=self.beat, stale_after=self.stale_after)

    def ready(self) -> tuple[bool, str]:
        return verdict(now=self.clock(), beat=self.beat, stale_after=self.stale_after,
                       started=self.app_beat is not None,
                       recovering=bool(getattr(self._app, "in_recovery", False)))


class Heartbeat(mode.Service):
    """Beats `health` on the worker's loop; pass it to faust.Worker, which starts it first."""

    def __init__(self, health: Health, **kwargs: Any) -> None:
        self.health = health
        super().__init__(**kwargs)

    @mode.Service.task
    async def _beat(self) -> None:
        while not self.should_stop:
            self.health.beat = self.health.clock()
            await self.sleep(BEAT_SECONDS)


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
