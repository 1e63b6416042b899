"""Where the benchmarks run: the broker and database (given, or started for the run by
deploy/local/stack.py on free ports), an isolated topic prefix per benchmark, and child
processes (servers under test) that are waited for by polling and always stopped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.core import ROOT
from deploy.local import stack
from services.common.config.settings import KafkaSettings
from services.common.kafka.topics import ensure_topics


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    database_url: str
    workdir: Path
    # the broker's and the postmaster's pids when this run started them (for CPU accounting)
    processes: dict[str, int] = field(default_factory=dict)

    async def kafka(self, partitions: int = 2) -> KafkaSettings:
        """Settings with a topic prefix of its own, and its topics created."""
        settings = KafkaSettings(
            bootstrap_servers=self.bootstrap,
            NURTURE_TOPIC_PREFIX=f"bench-{uuid.uuid4().hex[:8]}.")
        await ensure_topics(settings, partitions=partitions)
        return settings

    def schema(self, what: str) -> str:
        return f"bench_{what}_{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def infrastructure(workdir: Path) -> AsyncIterator[Infra]:
    """KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else a broker and a database of the run's
    own on free ports, stopped at the end."""
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any load
    started: list[Any] = []
    processes: dict[str, int] = {}
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = stack.Kafka(home=workdir / "kafka", port=stack.free_port(),
                                 libs=stack.kafka_libs())
            await asyncio.to_thread(broker.start)
            started.append(broker)
            bootstrap = broker.bootstrap
            processes["kafka"] = stack.read_pid(broker.pidfile, "kafka.Kafka") or 0
        url = os.environ.get("DATABASE_URL")
        if not url:
            pg = stack.Postgres(home=workdir / "postgres", port=stack.free_port())
            await asyncio.to_thread(pg.start)
            started.append(pg)
            url = pg.url
            processes["postgres"] = stack.read_pid(pg.datadir / "postmaster.pid") or 0
        yield Infra(bootstrap, url, workdir, {k: v for k, v in processes.items() if v})
    finally:
        for server in reversed(started):
            if isinstance(server, stack.Postgres):
                await asyncio.to_thread(server.destroy)
            else:
                await asyncio.to_thread(server.stop)


free_port = stack.free_port


async def poll(check: Callable[[], Any], *, within: float, what: str,
               every: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


@asynccontextmanager
async def child(args: list[str], env: dict[str, str], log: Path,
                ready: Callable[[subprocess.Popen[bytes]], Any], *,
                within: float = 120) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`python args...` as a child process (output to `log`), yielded once `ready(proc)`."""
    # starting a child blocks for milliseconds, before any measurement
    with open(log, "ab") as out:  # noqa: ASYNC230
        proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, *args], env={**os.environ, **env}, cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        def up() -> Any:
            if proc.poll() is not None:
                raise RuntimeError(f"{args} exited:\n{log.read_text()[-3000:]}")
            return ready(proc)  # poll() awaits it when it is a coroutine
        await poll(up, within=within, what=f"{args} ready", every=0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)


def http_ready(url: str) -> Callable[[subprocess.Popen[bytes]], Any]:
    async def check(_: subprocess.Popen[bytes]) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url, timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False
    return check
