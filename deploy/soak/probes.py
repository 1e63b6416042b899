"""What an endurance run reads from the running system: the memory of every process (from
/proc), the row count of every table of the services' schemas (count(*), exact; the tables are
kept small by pruning) and the consumer lag of every group (committed against end offsets,
read with an admin client and a group-less consumer, so nobody's offsets move)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from deploy.chaos.observe import backlog
from deploy.chaos.processes import ChaosStack
from deploy.local.stack import read_pid

log = logging.getLogger(__name__)
PROC = Path("/proc")


def status_kb(pid: int, field: str, proc: Path = PROC) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, RssAnon, ...) in bytes; None if gone."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def pss(pid: int, proc: Path = PROC) -> int | None:
    """The proportional set size of a process (shared pages split between their users)."""
    try:
        text = (proc / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def children(pid: int, proc: Path = PROC) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:  # after "pid (comm) state"
                found.append(int(entry.name))
    return found


def memory(stack: ChaosStack) -> dict[str, int | None]:
    """Bytes per process: VmRSS of each service, of the broker's JVM and of this driver (the
    peers and the observer, which keep every observation); for PostgreSQL the Pss summed over
    the postmaster and its backends (its shared buffers counted once)."""
    out: dict[str, int | None] = {}
    for name, service in stack.services.items():
        proc = service.proc
        out[name] = status_kb(proc.pid, "VmRSS") if proc is not None and service.alive() \
            else None
    broker = read_pid(stack.kafka.pidfile, "kafka.Kafka")
    out["kafka"] = None if broker is None else status_kb(broker, "VmRSS")
    out["driver"] = status_kb(os.getpid(), "VmRSS")
    postmaster = read_pid(stack.pg.datadir / "postmaster.pid")
    if postmaster is None:
        out["postgres"] = None
    else:
        sizes = [pss(p) or status_kb(p, "VmRSS") for p in (postmaster, *children(postmaster))]
        out["postgres"] = sum(s for s in sizes if s is not None) or None
    return out


async def row_counts(database_url: str) -> dict[str, int] | None:
    """`schema.table` -> count(*) for every table of every schema but PostgreSQL's own
    (Alembic's version tables left out); None when the database cannot be read."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            tables = await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_name <> 'alembic_version' "
                "AND table_schema NOT IN ('pg_catalog', 'information_schema') "
                "ORDER BY 1, 2")
            if not tables:
                return {}
            query = " UNION ALL ".join(
                f"SELECT '{r[0]}.{r[1]}' AS name, count(*) AS n "  # noqa: S608 - names from the catalog
                f"FROM {_quote(r[0])}.{_quote(r[1])}" for r in tables)
            rows = await conn.fetch(query, timeout=10)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.debug("row counts failed: %s", exc)
        return None
    return {str(r["name"]): int(r["n"]) for r in rows}


async def waiting(database_url: str) -> dict[str, int] | None:
    """Work waiting in the services' tables (the fault run's backlog query): dispatch's
    deliveries not final (`pending`, `sending`), orchestrator timers due, unpublished outbox
    rows of both. None when the database cannot be read."""
    b = await backlog(database_url, ())
    return None if b is None else {"deliveries_unfinished": b.unfinished,
                                   "timers_due": b.due_timers, "outbox": b.outbox}


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class LagProbe:
    """Reads every consumer group's lag: per group, the sum over the partitions it has
    committed of end offset - committed offset. Clients are made on first use and made anew
    after a failure (the broker restarted)."""

    def __init__(self, bootstrap: str, *, timeout: float = 5.0) -> None:
        self.bootstrap, self.timeout = bootstrap, timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self) -> dict[str, int] | None:
        """group -> records behind; None when the broker cannot be read."""
        try:
            return await asyncio.wait_for(self._read(), self.timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("lag read failed: %s", exc)
            await self.close()
            return None

    async def _read(self) -> dict[str, int]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                        request_timeout_ms=int(self.timeout * 1000))
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False)
            self._admin, self._consumer = admin, consumer
            await admin.start()
            await consumer.start()
        groups = sorted(str(g[0]) for g in await self._admin.list_consumer_groups())
        committed = {g: {tp: om.offset for tp, om in
                         (await self._admin.list_consumer_group_offsets(g)).items()
                         if om.offset >= 0} for g in groups}
        partitions = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await self._consumer.end_offsets(partitions) if partitions else {}
        return {g: sum(max(0, ends[tp] - at) for tp, at in offsets.items())
                for g, offsets in committed.items()}

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        for client in (consumer, admin):
            if client is not None:
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await asyncio.wait_for(
                        client.stop() if isinstance(client, AIOKafkaConsumer)
                        else client.close(), self.timeout)
