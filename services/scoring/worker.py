"""The faust-streaming adapter: a worker that consumes `nurture.events.v1`, keeps per-lead state in
a changelog-backed table and produces `nurture.scored-events.v1` (and dead letters).

Lead state is one table entry per lead id, co-partitioned with the input topic, so a restarted
or rebalanced worker restores exactly the leads of its partitions from the changelog before it
processes anything. Offsets are committed after the outputs are flushed (at-least-once); the
engine's per-lead dedupe window makes a redelivered event a no-op."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faust.types import StreamT

from schemas import EVENT_TYPES
from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import connection_options, make_admin
from services.common.kafka.deadletter import Origin
from services.common.kafka.topics import Topics
from services.scoring.gaps import GapGuard
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import Processor
from services.scoring.settings import ScoringSettings

log = logging.getLogger(__name__)
LAG_SECONDS = 10.0
HANDLED_SECONDS = 1.0  # how often the gap guard records what it vouches for (gaps.py)


def _credentials(kafka: KafkaSettings) -> Any:
    opts = connection_options(kafka, client_id="nurture-scoring")
    if kafka.sasl_mechanism:
        return faust.SASLCredentials(
            username=opts["sasl_plain_username"], password=opts["sasl_plain_password"],
            mechanism=kafka.sasl_mechanism, ssl_context=opts.get("ssl_context"))
    if "ssl_context" in opts:
        return faust.SSLCredentials(opts["ssl_context"])
    return None


def app_id(settings: ScoringSettings, kafka: KafkaSettings) -> str:
    """faust's app id: the worker's consumer group and its changelog topics' prefix."""
    return f"{kafka.topic_prefix}{settings.app_id}"


def create_app(settings: ScoringSettings, kafka: KafkaSettings, processor: Processor,
               metrics: ScoringMetrics, *, partitions: int,
               committed_at_startup: Mapping[TopicPartition, int] | None = None) -> faust.App:
    """The faust app; `partitions` must equal the input topic's partition count.
    `committed_at_startup`: the group's committed offsets read before the worker started
    (`gaps.committed`), for the gap guard."""
    topics = Topics(kafka.topic_prefix)
    app = faust.App(
        app_id(settings, kafka),
        broker=[f"kafka://{host}" for host in kafka.bootstrap_servers.split(",")],
        broker_credentials=_credentials(kafka),
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=settings.state_dir,
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_seconds / 10),
        broker_commit_interval=settings.commit_interval_seconds,
        producer_acks=-1,
        # outputs and changelog writes leave in batches: one produce request per few ms
        # instead of one per record (the per-record requests were most of the worker's CPU)
        producer_linger=settings.producer_linger_ms / 1000.0,
        web_enabled=False,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                           "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(topics.events, **raw)
    outputs = {name: app.topic(name, **raw) for name in (topics.scored_events, topics.deadletter)}
    table = app.Table("lead-state", partitions=partitions, default=None,
                      key_type=bytes, value_type=bytes)
    # Tables take their codec from key/value *models*; ours are opaque bytes (LeadState JSON),
    # so the changelog must carry them as they are.
    codec_holder: Any = table
    codec_holder.key_serializer = codec_holder.value_serializer = "raw"
    metrics.leads.set_function(lambda: float(len(table)))

    @app.timer(interval=LAG_SECONDS)  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        """Records of the input topic this worker's partitions have not consumed yet: the end
        offsets asked of the broker now (faust's monitor only learns them when a fetch returns,
        so a stuck worker's lag would stay flat) minus what faust's monitor saw read."""
        monitor = app.monitor
        mine = [tp for tp in app.consumer.assignment() if tp.topic == topics.events]
        ends = await app.consumer.highwaters(*mine) if mine else {}
        lag = 0
        for tp, end in ends.items():
            # next to read: after the last read record, else the committed offset
            read = monitor.tp_read_offsets.get(tp)
            done = read + 1 if read is not None else monitor.tp_committed_offsets.get(tp)
            if done is not None:
                lag += max(0, end - done)
        metrics.lag.set(app.conf.id, {topics.events: lag})

    guard = GapGuard(kafka, app.conf.id, committed_at_startup)

    @app.timer(interval=HANDLED_SECONDS)  # type: ignore[untyped-decorator]
    async def record_handled() -> None:
        """The guard's own account of where the stream truly is (services/scoring/gaps.py)."""
        mine = [tp for tp in app.consumer.assignment() if tp.topic == topics.events]
        await guard.record(app.monitor.tp_committed_offsets, mine)

    async def handle(key: bytes | None, value: bytes | None, origin: Origin,
                     timestamp_ms: int) -> None:
        started = time.perf_counter()
        result = processor.process(
            key=key, value=value, origin=origin, timestamp_ms=timestamp_ms,
            state=table.get(key) if key is not None else None, now=datetime.now(UTC))
        if result.state is not None:
            table[key] = result.state
        elif result.erase and key in table:
            del table[key]  # writes the tombstone to the compacted changelog
        for out in result.out:
            # straight to the producer's buffer (faust's Topic.send wraps every record in
            # futures and sensors); an offset is committed only after a producer flush, so
            # the output of every committed event has been delivered (at-least-once)
            await app.producer.send(out.topic, out.key, out.value, None, None, out.headers)
        _observe(metrics, result, time.perf_counter() - started)

    @app.agent(source)
    async def score(stream: StreamT[bytes]) -> None:
        for topic in outputs.values():  # created before the first send, with our partitions
            await topic.maybe_declare()
        async for event in stream.events():
            msg = event.message
            # records faust skipped and acked during a rebalance come first (services/scoring/
            # gaps.py); they share this record's partition, so table writes land right
            for rec in await guard.missing(msg.tp, msg.offset, app.consumer_generation_id):
                metrics.reread.inc()
                await handle(rec.key, rec.value, Origin(rec.topic, rec.partition, rec.offset),
                             rec.timestamp)
            await handle(msg.key, msg.value, Origin(msg.topic, msg.partition, msg.offset),
                         int(msg.timestamp * 1000) if msg.timestamp else 0)
            guard.handled(msg.tp, msg.offset)

    return app


async def ensure_changelog(app: faust.App, kafka: KafkaSettings, *, partitions: int,
                           replication_factor: int) -> str:
    """Create the table's compacted changelog topic before the worker starts, as every topic is
    created (explicitly, docs/architecture.md): left to faust, two workers starting together on a
    fresh cluster sometimes both skipped it, and every table write then failed (PartitionsMismatch:
    the changelog 'has 0 partitions'). Returns the topic's name."""
    name: str = app.tables["lead-state"].changelog_topic.get_topic_name()
    admin = make_admin(kafka, client_id="nurture-scoring")
    await admin.start()
    try:
        if name not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):  # the other worker was first
                await admin.create_topics([NewTopic(
                    name=name, num_partitions=partitions, replication_factor=replication_factor,
                    topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    return name


def _observe(metrics: ScoringMetrics, result: Any, seconds: float) -> None:
    etype = result.event_type if result.event_type in EVENT_TYPES else "other"
    metrics.events.labels(etype, result.outcome).inc()
    metrics.latency.observe(seconds)
    if result.snapshot is not None:
        for model in result.snapshot.models:
            for crossing in model.crossed:
                metrics.crossings.labels(model.model, crossing.threshold,
                                         crossing.direction).inc()
    if result.outcome == "dead_lettered":
        letter = orjson.loads(result.out[0].value)
        log.warning("dead-lettered a record", extra={
            "reason": letter["error"], **{f"origin_{k}": v for k, v in letter["origin"].items()}})
