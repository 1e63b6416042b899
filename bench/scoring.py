"""2. Scoring: events/s of the real scorer (`nurture-scoring worker`, a child process, memory
store) against (a) a naive faust agent (bench/naive_agent.py) and (b) a bare aiokafka `getmany` +
JSON decode loop, each draining the same backlog. A worker's rate is taken from the timestamps of
what it wrote (first to last record), so start-up and group joining are not counted; so is its
CPU per event (user + system time of the child process from its first record read to the
last, over the records in between).

Memory of scorer state per lead: the worker's table values (LeadState JSON bytes, what the
memory store holds) and LeadState objects, against a dict-of-dicts holding the same fields; sizes
are sys.getsizeof summed over each object graph (keys included), scaled to 1M leads."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownTopicOrPartitionError

from bench.core import (
    ROOT,
    Sizes,
    Stopwatch,
    absolute,
    compare,
    cpu_seconds,
    events,
    iter_events,
    rate,
)
from bench.infra import Infra, child, free_port, poll
from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_producer
from services.common.kafka.topics import Topics
from services.scoring.adapters.model_files import load_models
from services.scoring.domain.backtest import Replay
from services.scoring.service_layer.handlers import event_time

MODELS = [str(ROOT / "config" / "scoring" / "b2b.yaml"),
          str(ROOT / "config" / "scoring" / "product-led.yaml")]
MILLION = 1_000_000
CPU_TARGET_US = 150.0  # the worker's CPU per event (issue #18)


async def fill(kafka: KafkaSettings, items: list[dict[str, Any]]) -> None:
    producer = make_producer(kafka, client_id="bench-fill")
    await producer.start()
    try:
        topic = Topics(kafka.topic_prefix).events
        futures = [await producer.send(topic, orjson.dumps(e), key=e["subject"].encode())
                   for e in items]
        for f in futures:
            await f
    finally:
        await producer.stop()


@dataclass
class Drained:
    """What `drain` read: records, seconds between the first and the last record's timestamps
    (with `decode`: of the reading loop itself) and, when it watched the writer's CPU, the
    writer's CPU microseconds per record from the first record read to the last."""

    records: int
    seconds: float
    cpu_us_per_record: float | None = None
    idle_cpu_percent: float | None = None  # of one core, once the backlog is done (`idle`)


async def drain(bootstrap: str, topic: str, count: int, *, within: float = 300,
                decode: bool = False, proc: subprocess.Popen[bytes] | None = None) -> Drained:
    """Read `topic` from the start until `count` records (written by `proc`, if given)."""
    consumer = await _consumer(bootstrap, topic, within, proc)
    seen, first, last = 0, float("inf"), 0.0
    clock: Stopwatch | None = None
    cpu_start: tuple[int, float] | None = None  # records seen, the writer's CPU seconds
    try:
        async def more() -> bool:
            nonlocal seen, first, last, clock, cpu_start
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}")
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if proc is not None and cpu_start is None and batches:
                # from the first record on: the writer's start-up and group join not counted
                cpu_start = (seen, cpu_seconds(proc.pid))
            for part in batches.values():
                if clock is None and part:
                    clock = Stopwatch()
                for record in part:
                    if decode:
                        orjson.loads(record.value or b"")
                    first, last = min(first, record.timestamp), max(last, record.timestamp)
                seen += len(part)
            return seen >= count
        await poll(more, within=within, what=f"{count} records on {topic}", every=0)
        cpu_us = None
        if proc is not None and cpu_start is not None and seen > cpu_start[0]:
            cpu_us = round((cpu_seconds(proc.pid) - cpu_start[1]) * 1e6 / (seen - cpu_start[0]), 1)
    finally:
        await consumer.stop()
    if decode:
        assert clock is not None
        return Drained(seen, clock())
    return Drained(seen, (last - first) / 1000.0, cpu_us)


async def _consumer(bootstrap: str, topic: str, within: float,
                    proc: subprocess.Popen[bytes] | None) -> AIOKafkaConsumer:
    """A started consumer of `topic`, waiting for the topic to exist (a worker creates its
    output topics when it starts)."""
    deadline = time.monotonic() + within
    while True:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    max_partition_fetch_bytes=4 << 20)
        try:
            await consumer.start()
            return consumer
        except UnknownTopicOrPartitionError:
            await consumer.stop()
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise
            await asyncio.sleep(0.5)


async def real_worker(infra: Infra, kafka: KafkaSettings, n: int,
                      idle_seconds: float) -> Drained:
    state = infra.workdir / f"scorer-{kafka.topic_prefix}"
    log = infra.workdir / "scorer.log"
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "NURTURE_TOPIC_PREFIX": kafka.topic_prefix, "NURTURE_SCORING_MODELS": ",".join(MODELS),
           "NURTURE_SCORING_STATE_DIR": str(state), "NURTURE_LOG_LEVEL": "WARNING",
           "NURTURE_SCORING_METRICS_PORT": str(free_port())}
    async with child(["-m", "services.scoring", "worker"], env, log, lambda _p: True) as proc:
        drained = await drain(kafka.bootstrap_servers, Topics(kafka.topic_prefix).scored_events,
                              n, proc=proc)
        return await idle(drained, proc, idle_seconds)


async def naive_agent(infra: Infra, kafka: KafkaSettings, n: int,
                      idle_seconds: float) -> Drained:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "NURTURE_TOPIC_PREFIX": kafka.topic_prefix,
           "BENCH_STATE_DIR": str(infra.workdir / f"naive-{kafka.topic_prefix}")}
    changelog = f"{kafka.topic_prefix}naive-agent-naive-scores-changelog"
    async with child(["-m", "bench.naive_agent", "worker", "-l", "warn"], env,
                     infra.workdir / "naive.log", lambda _p: True) as proc:
        drained = await drain(kafka.bootstrap_servers, changelog, n, proc=proc)
        return await idle(drained, proc, idle_seconds)


async def idle(drained: Drained, proc: subprocess.Popen[bytes], seconds: float) -> Drained:
    """`drained` with the CPU its writer uses with nothing to read (over `seconds`, from one
    commit interval after the backlog), as a percentage of one core."""
    await asyncio.sleep(min(seconds, 1.5))  # the last commit and flush: not idle yet
    before = cpu_seconds(proc.pid)
    await asyncio.sleep(seconds)  # the quiet period measured, not a synchronization
    used = cpu_seconds(proc.pid) - before
    return replace(drained, idle_cpu_percent=round(100 * used / seconds, 2))


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes held by `obj` and everything it references (dicts, lists, slotted objects), each
    object counted once: sys.getsizeof summed over the object graph."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set):
        size += sum(deep_size(v, seen) for v in obj)
    elif hasattr(obj, "__slots__"):
        size += sum(deep_size(getattr(obj, name), seen) for name in obj.__slots__
                    if hasattr(obj, name))
    return size


def memory(leads: int) -> dict[str, Any]:
    """Bytes per lead of scorer state, three ways, after 3 events per lead."""
    models = load_models(MODELS)
    replay = Replay(models)
    for e in iter_events(leads * 3, leads, seed=5):
        replay.feed(e, event_time(e, 0))
    states = replay.leads
    table = {k.encode(): s.to_bytes() for k, s in states.items()}  # the worker's memory store
    plain = {k.decode(): orjson.loads(v) for k, v in table.items()}
    objects = {k.decode(): _from(v) for k, v in table.items()}
    scale = MILLION / leads
    return {
        "leads_measured": leads, "scaled_to": MILLION, "models": len(models),
        "table_bytes_mb_per_1m": round(deep_size(table) * scale / 2**20, 1),
        "leadstate_objects_mb_per_1m": round(deep_size(objects) * scale / 2**20, 1),
        "dict_of_dicts_mb_per_1m": round(deep_size(plain) * scale / 2**20, 1),
    }


def _from(raw: bytes) -> Any:
    from services.scoring.domain.state import LeadState
    return LeadState.from_bytes(raw)


async def run(infra: Infra, sizes: Sizes) -> dict[str, Any]:
    n = sizes.scoring_events
    backlog = events(n, max(10, n // 5), seed=3)
    kafka = await infra.kafka()
    await fill(kafka, backlog)
    read = await drain(kafka.bootstrap_servers, Topics(kafka.topic_prefix).events, n,
                       decode=True)
    bare = rate(read.records, read.seconds)
    worker = await real_worker(infra, kafka, n, sizes.idle_seconds)
    agent = await naive_agent(infra, kafka, n, sizes.idle_seconds)
    real, naive = rate(worker.records - 1, worker.seconds), rate(agent.records - 1, agent.seconds)
    mem = memory(sizes.memory_leads)
    return {
        "measured": {"real_worker_events_per_s": real, "naive_agent_events_per_s": naive,
                     "real_worker_cpu_us_per_event": worker.cpu_us_per_record,
                     "naive_agent_cpu_us_per_event": agent.cpu_us_per_record,
                     "real_worker_idle_cpu_percent": worker.idle_cpu_percent,
                     "naive_agent_idle_cpu_percent": agent.idle_cpu_percent,
                     "getmany_json_events_per_s": bare, "memory": mem},
        "comparisons": [
            absolute("scoring worker CPU per event", worker.cpu_us_per_record or 0.0, unit="µs",
                     target=CPU_TARGET_US, higher_is_better=False,
                     extra={"naive_agent_cpu_us": agent.cpu_us_per_record}),
            absolute("scoring worker idle CPU, % of a core", worker.idle_cpu_percent,
                     unit="%", target=None, higher_is_better=False,
                     extra={"naive_agent_idle_cpu_percent": agent.idle_cpu_percent}),
            compare("scoring worker vs naive faust agent", real, naive, target=2.0,
                    unit="events/s", baseline_name="naive faust agent (table[k] = f(...))"),
            compare("scoring worker vs bare getmany+JSON", real, bare, target=0.4,
                    unit="events/s", baseline_name="aiokafka getmany + orjson.loads loop"),
            compare("scorer state memory per 1M leads (worker table)",
                    mem["table_bytes_mb_per_1m"], mem["dict_of_dicts_mb_per_1m"],
                    target=0.35, unit="MiB", higher_is_better=False,
                    baseline_name="dict-of-dicts with the same fields"),
            compare("scorer state memory per 1M leads (LeadState objects)",
                    mem["leadstate_objects_mb_per_1m"], mem["dict_of_dicts_mb_per_1m"],
                    target=None, unit="MiB", higher_is_better=False,
                    baseline_name="dict-of-dicts with the same fields"),
        ],
    }
