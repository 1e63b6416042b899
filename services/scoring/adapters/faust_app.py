"""The faust-streaming adapter, and every workaround the scoring worker needs for faust's behavior.

The worker consumes `nurture.events.v1`, keeps per-lead state in a changelog-backed table and
produces `nurture.scored-events.v1` (and dead letters). Lead state is one table entry per lead
id, co-partitioned with the input topic, so a restarted or rebalanced worker restores exactly the
leads of its partitions from the changelog before it processes anything. The agent takes events
in batches (`batches`: `NURTURE_SCORING_BATCH_MAX` events, or what arrived within
`NURTURE_SCORING_BATCH_WAIT_MS` of the first), scores them one by one in order, writes each lead
the batch touched to the table once, with its newest state (`Pending`; a lead's changelog
partition is its input partition, `_lead_table`), sends the outputs and changelog records as one
record batch per partition (`RecordBatches`), and acks the batch's events only once the broker
has stored them all. Offsets are committed after acks (at-least-once); the per-lead dedupe
window makes a redelivered event a no-op. What to do with one record is
`service_layer/handlers.py` (`Processor.process`); this module only moves records between faust
and it.

Workarounds, each with the upstream reports it covers (faust-streaming 0.15 pinned):

1. **Skipped records re-read** (`GapGuard`, the agent's loop in `create_app`). faust drops a
   record fetched under an older consumer-group generation (or while its flow control is paused
   for a rebalance) and still acks its offset, so the offset can be committed although the agent
   never saw the record (seen after a kill -9 and restart: the first record of the new generation
   vanished, offsets committed past it). The generation check came with faust-streaming/faust#223
   (the fix of #221, prefetched events after a rebalance); skipped and out-of-order offsets around
   a rebalance: faust-streaming/faust#216, robinhood/faust#115. The guard sees the gap (the agent
   sees every other record with its offset), re-reads it with a plain consumer and scores it
   first; if faust delivered it after all, the dedupe window makes the second pass a no-op.
2. **Stuck commits fail liveness** (`watch` feeding `entrypoints/probes.py`'s
   `CommitWatch`). faust's commit can hang while the loop keeps beating (seen once in the aiokafka
   producer's flush after a broker restart, docs/reliability.md; robinhood/faust#596, "Faust app
   hangs on kafka restart", and aio-libs/aiokafka#1018, "Can't recover from
   NotLeaderForPartitionError"), and a gap in acked offsets blocks every later commit
   (faust-streaming/faust#596, faust-streaming/faust#312). /livez fails once records read have
   waited `NURTURE_SCORING_COMMIT_STUCK_SECONDS` for a commit, so Kubernetes restarts the worker.
3. **A heartbeat that faust starts first** (`Heartbeat`). faust starts an app's timers only
   once its tables are recovered, so the liveness beat is a `mode.Service` handed to
   `faust.Worker`, which starts it before the app; the app's own timer is the readiness beat.
4. **Raw bytes in the table's changelog** (`_lead_table`). Tables take their codec from key/value
   *models* and accept no serializer argument (faust-streaming/faust#556; robinhood/faust#148,
   robinhood/faust#538 for the JSON-codec changelog); ours are opaque bytes (LeadState JSON), so
   the table's serializers are set to "raw" after it is built.
5. **The changelog topic created by us** (`ensure_changelog`). Left to faust, two workers
   starting together on a fresh cluster sometimes both skipped it, and every table write then
   failed (PartitionsMismatch: the changelog "has 0 partitions"). No upstream report found.
6. **Consumer lag from the broker** (`_add_lag_timer`). faust's monitor learns end offsets only
   when a fetch returns (robinhood/faust#139), so a stuck worker's lag would stay flat; the lag
   is asked of the broker every `LAG_SECONDS`.
7. **Outputs straight to the producer** (`_score_agent`). `Topic.send` wraps every record in
   futures and sensors (most of the worker's CPU per record); the agent hands them to aiokafka's
   producer beneath faust's (workaround 11) and declares its output topics before the first
   send (with our partitions). No upstream report found.
8. **Batches without an idle timer** (`batches`). `Stream.take_events` fills its batch from the
   stream's passive drain (cheaper per event than an agent iterating event by event: about
   325 against 385 µs of the worker's CPU per event here), but its loop wakes every `within`
   even when no event comes, through `mode`'s waits: about 5% of a core at 5 ms while idle.
   `batches` fills the same way (`add_processor` and the stream's passive drain, a private
   method) and waits for the first event of a batch without a timer. No upstream report found.
9. **RocksDB writes under an event** (`Pending.write`). A `use_partitioner` table may be written
   outside an event (its changelog partition comes from the key), but the RocksDB store's `_set`
   still takes the partition of its database from the current event, and asserts there is one
   (its `_get` and `_contains` honour `use_partitioner`). Each lead is written under the event
   that last touched it (the stream's private `_set_current_event`): its own partition. No
   upstream report found.
10. **A shorter fetch wait** (`_App`). faust builds its consumer with a hard-coded
   `fetch_max_wait_ms=1500`. aiokafka sends one fetch per broker at a time, and leaves out a
   partition whose fetched records have not been taken yet; when faust took them late (during a
   slow commit, for instance), the fetch in flight covered only partitions without new records
   (an idle one, faust's `__assignor-__leader` topic), the broker held it the full 1.5 s, and
   the records behind it waited as long: the end-to-end bench saw scored events 0.5-1 s late
   for a while in about one run of four (docs/benchmarks.md). The consumer is built with
   `NURTURE_SCORING_FETCH_WAIT_MS` (100 ms) instead, through the consumer thread's private
   `_create_worker_consumer`; an idle worker then fetches ten times a second. No upstream
   report found.
11. **Record batches, not records** (`RecordBatches`, `Pending`). Even straight to aiokafka's
   `send`, each record cost a future, a partitioner call and an accumulator lookup, and each
   table write went through faust's changelog path (`send_soon`, its `ProducerBuffer`, futures
   and sensors): about a quarter of the worker's CPU per event. A batch's outputs and changelog
   records are appended to one record batch per topic partition (`create_batch`) and sent once
   each (`send_batch`); the store is written directly (`table.data`), each changelog record goes
   to the partition of the event that wrote it (where the `use_partitioner` table put it), and
   the RocksDB store's persisted offsets are set as faust's `_on_changelog_sent` sets them.
   The batch is acked only once the broker has stored every one of its record batches (a
   failure raises; before, nothing read a failed send's future).
   Measured on a 20,000-event backlog, three runs each, alternately: 345 against 217 µs of
   the worker's CPU per event. No upstream report found.
12. **A message delivered without tasks** (`_App`, `eager.Eager`). faust's consumer hands each
   message to the streams through `mode`'s `wait_first`, which makes four tasks per message
   (the callback, the flow's pause, the service's stop and crash), waits for the first and
   cancels the rest: about 30 µs per message, a sixth of the worker's CPU per event after
   workaround 11. The consumer's `wait_first` starts the callback at once, as Python 3.12's
   eager tasks would; only a callback that has to wait (the flow paused, a queue full) goes
   on through `mode`'s. Measured as in 11: 201 against 154 µs per event. No upstream report
   found.
13. **Stalled partitions reported and re-read** (`_add_lag_timer`, `Heartbeat`, `stalls.py`).
   After a rebalance a worker was seen, rarely, to stop receiving some or all of its
   partitions' records with no error (with and without workaround 12; docs/architecture.md,
   known problem). An input partition with records to read and no read for `STALL_SECONDS`
   is logged as a warning with what faust's consumer and aiokafka's fetcher hold for it and
   where faust's fetch loop waits, and sought back to its committed offset (`_reread`): a
   safety net behind workaround 14, which removes the cause the report found. A table
   recovery that reads nothing of a changelog partition with records for as long is reported
   alike by the heartbeat service (the app's timers wait for the recovery) and that partition
   sought to the record after the recovery's last (`_reread_changelog`; seen to heal one):
   faust's fetch loop was idle, so faust's `getmany` dropped them; which check, not known yet.
14. **A running flow's records kept** (`flow.py`). faust's recovery resumes its flow control
   once more after it has resumed and sought the stream partitions, and each resume clears
   the streams' queues: records fetched in that window were dropped while faust and aiokafka
   counted them as delivered, and the partition stalled until the next rebalance (the cause
   workaround 13's report found). A resume of a flow that is already running now leaves the
   queues alone; a resume after a rebalance's suspension clears them as before. No upstream
   report found.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
import httpx
import mode
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from faust.streams import Stream
from faust.types import ChannelT, EventT, StreamT
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential

from services.common.clock import SharedClock
from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import (
    MAX_BATCH_BYTES,
    connection_options,
    make_admin,
    make_consumer,
)
from services.common.kafka.deadletter import Origin
from services.common.kafka.topics import Topics, create_topic
from services.scoring.adapters.eager import Eager
from services.scoring.adapters.flow import keep_running_flow
from services.scoring.adapters.record_batches import RecordBatches
from services.scoring.adapters.stalls import (
    Stalls,
    consumer_state,
    partition_name,
    watched_tasks,
)
from services.scoring.domain.state import LeadState
from services.scoring.entrypoints.probes import BEAT_SECONDS, Health
from services.scoring.metrics import ScoringMetrics
from services.scoring.service_layer.handlers import Processor, Result
from services.scoring.settings import ScoringSettings

log = logging.getLogger(__name__)
LAG_SECONDS = 10.0
HANDLED_SECONDS = 1.0  # how often the gap guard records what it vouches for
READ_TIMEOUT_SECONDS = 60.0
REFRESH_SECONDS = 3600.0
CLIENT_ID = "nurture-scoring-gaps"
TABLE = "lead-state"
RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                       "key_serializer": "raw", "value_serializer": "raw"}


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


class _App(faust.App):
    """faust's App, whose consumer waits at most `fetch_wait_ms` for a fetch (workaround 10)
    and delivers a message without tasks when nothing has to wait (workaround 12), and whose
    flow control keeps the records of a running flow (workaround 14)."""

    fetch_wait_ms = 1500

    async def on_start(self) -> None:
        await super().on_start()  # the consumer exists now; its thread starts after this
        keep_running_flow(self.flow_control)  # workaround 14
        consumer: Any = self.consumer
        if not isinstance(consumer.wait_first, Eager):  # on_start runs again on a restart
            consumer.wait_first = Eager(consumer.wait_first, lambda: not (
                consumer.suspend_flow.is_set() or consumer._stopped.is_set()
                or consumer._crashed.is_set()))
        thread: Any = consumer._thread
        create, wait_ms = thread._create_worker_consumer, self.fetch_wait_ms

        def create_worker_consumer(transport: Any) -> Any:
            consumer = create(transport)
            consumer._fetch_max_wait_ms = wait_ms  # read by its fetcher when it starts
            log.info("the consumer waits at most %d ms for a fetch", wait_ms)
            return consumer
        thread._create_worker_consumer = create_worker_consumer


def _faust_app(settings: ScoringSettings, kafka: KafkaSettings, partitions: int) -> faust.App:
    app = _App(
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
        # a partition's records of a scoring batch leave as one record batch (workaround 11)
        producer_max_batch_size=MAX_BATCH_BYTES,
        web_enabled=False,
    )
    app.fetch_wait_ms = settings.fetch_wait_ms
    return app


def _lead_table(app: faust.App, partitions: int) -> Any:
    """The per-lead state table. Tables take their codec from key/value *models*; ours are
    opaque bytes (LeadState JSON), so the changelog must carry them as they are (workaround 4).

    Written once per batch, outside faust's per-event context (`use_partitioner`, so its
    RocksDB store reads every partition), its store directly and its changelog records by the
    agent (workaround 11), each to the partition of the event that wrote it: a lead's changelog
    partition is its input partition, and a worker restores exactly the leads of its partitions
    (tests/scoring/integration: the changelog follows the input)."""
    table = app.Table(TABLE, partitions=partitions, default=None, use_partitioner=True,
                      key_type=bytes, value_type=bytes)
    codec_holder: Any = table
    codec_holder.key_serializer = codec_holder.value_serializer = "raw"
    return table


def _add_lag_timer(app: faust.App, topics: Topics, metrics: ScoringMetrics) -> None:
    stalls = Stalls()

    @app.timer(interval=LAG_SECONDS)  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        """Records of the input topic this worker's partitions have not consumed yet: the end
        offsets asked of the broker now (faust's monitor only learns them when a fetch returns,
        so a stuck worker's lag would stay flat) minus what faust's monitor saw read."""
        monitor = app.monitor
        mine = [tp for tp in app.consumer.assignment() if tp.topic == topics.events]
        ends = await app.consumer.highwaters(*mine) if mine else {}
        lag: dict[Any, int] = {}
        for tp, end in ends.items():
            # next to read: after the last read record, else the committed offset
            read = monitor.tp_read_offsets.get(tp)
            done = read + 1 if read is not None else monitor.tp_committed_offsets.get(tp)
            if done is not None:
                lag[tp] = max(0, end - done)
        metrics.lag.set(app.conf.id, {topics.events: sum(lag.values())})
        stalled = stalls.observe(time.monotonic(), lag, monitor.tp_read_offsets)
        if stalled:  # workaround 13: what the consumer holds, and a re-read of what was lost
            log.warning("partitions with records to read and none read for %.0f s; re-reading "
                        "them from their committed offsets", stalls.after,
                        extra={"partitions": sorted(map(partition_name, stalled)),
                               "lag": {partition_name(tp): lag[tp] for tp in stalled},
                               "consumer": consumer_state(app), "tasks": watched_tasks()})
            await _reread(app, stalled)


async def _reread(app: faust.App, stalled: list[Any]) -> None:
    """Seek each stalled partition to its committed offset, outside a recovery and with the
    flow running: the records faust dropped (docs/architecture.md, known problem) are fetched
    again; any already scored among them are recognized as duplicates."""
    consumer: Any = app.consumer
    if app.in_recovery or not consumer.flow_active:
        return
    for tp in stalled:
        committed = app.monitor.tp_committed_offsets.get(tp)
        if committed is not None:
            await consumer.seek(tp, committed)


def _add_guard_timer(app: faust.App, guard: GapGuard, topics: Topics) -> None:
    @app.timer(interval=HANDLED_SECONDS)  # type: ignore[untyped-decorator]
    async def record_handled() -> None:
        """The guard's own account of where the stream truly is (workaround 1)."""
        mine = [tp for tp in app.consumer.assignment() if tp.topic == topics.events]
        await guard.record(app.monitor.tp_committed_offsets, mine)


def create_app(settings: ScoringSettings, kafka: KafkaSettings, processor: Processor,
               metrics: ScoringMetrics, *, partitions: int,
               committed_at_startup: Mapping[TopicPartition, int] | None = None,
               clock: SharedClock | None = None) -> faust.App:
    """The faust app; `partitions` must equal the input topic's partition count.
    `committed_at_startup`: the group's committed offsets read before the worker started
    (`committed`), for the gap guard. `clock`: the orchestrator's moved clock to follow (local
    and demo runs): an event's time is judged "too far ahead" against it as well as against its
    record's time (the wall clock of its producer)."""
    topics = Topics(kafka.topic_prefix)
    app = _faust_app(settings, kafka, partitions)
    table = _lead_table(app, partitions)
    metrics.leads.set_function(lambda: float(len(table)))
    _add_lag_timer(app, topics, metrics)
    guard = GapGuard(kafka, app.conf.id, committed_at_startup)
    _add_guard_timer(app, guard, topics)
    if clock is not None:
        _add_clock_timer(app, clock)
    _score_agent(app, table, guard, processor, metrics, topics, clock, settings)
    return app


def _add_clock_timer(app: faust.App, clock: SharedClock) -> None:
    client = httpx.AsyncClient(timeout=5)

    @app.timer(interval=clock.every)  # type: ignore[untyped-decorator]
    async def follow_clock() -> None:
        await clock.refresh(client)


class Pending:
    """The table as one batch sees it: reads see the batch's own writes; each touched lead's
    newest state reaches the table's store once, when the batch ends (`write`), under the event
    that last touched it (`as_event`, workaround 9), and its changelog record goes to `records`
    for the partition of that event (workaround 11), where faust's `use_partitioner` table
    would have sent it: the input and the changelog are partitioned alike (`_lead_table`).

    It also keeps the decoded state of the `cache_leads` leads written last (`Result.lead`,
    beside the bytes it was written as): a read of a lead whose table value is still those
    bytes gets the object and saves the processor decoding them. A result without a state
    drops the lead's object (the processor may have changed it part way)."""

    def __init__(self, store: Any, as_event: Callable[[Any], None], records: RecordBatches,
                 changelog: str, *, cache_leads: int = 0) -> None:
        self.store, self.as_event = store, as_event
        self.records, self.changelog = records, changelog
        self.states: dict[bytes, tuple[bytes | None, Any]] = {}  # (None: erased, its event)
        self.cache_leads = cache_leads
        self.decoded: OrderedDict[bytes, tuple[bytes, LeadState]] = OrderedDict()

    def get(self, key: bytes) -> bytes | LeadState | None:
        value: bytes | None = self.states[key][0] if key in self.states else self.store.get(key)
        known = self.decoded.get(key)
        if known is not None and value is not None and (known[0] is value or known[0] == value):
            return known[1]
        return value

    def put(self, key: bytes, result: Result, event: Any) -> None:
        """The lead's `result`: its new state (or erasure) for the table, its decoded state to
        keep; a result that leaves the table alone forgets the decoded state."""
        if result.state is not None or result.erase:
            self.states[key] = (result.state, event)
        if result.state is None or result.lead is None or not self.cache_leads:
            self.decoded.pop(key, None)
            return
        self.decoded[key] = (result.state, result.lead)
        self.decoded.move_to_end(key)
        if len(self.decoded) > self.cache_leads:
            self.decoded.popitem(last=False)

    def write(self) -> None:
        try:
            for key, (value, event) in self.states.items():
                self.as_event(event)
                if value is not None:
                    self.store[key] = value
                elif key in self.store:
                    del self.store[key]
                else:
                    continue  # nothing to erase, no tombstone
                # None: the tombstone of the compacted changelog
                self.records.add(self.changelog, key, value, partition=event.message.partition)
        finally:
            self.as_event(None)
            self.states.clear()

    def persisted(self, delivered: Mapping[TopicPartition, int]) -> None:
        """What faust records once a changelog record is stored (`Table._on_changelog_sent`):
        the RocksDB store's offset per partition, where its recovery resumes."""
        for tp, offset in delivered.items():
            if tp.topic == self.changelog:
                self.store.set_persisted_offset(tp, offset)


def _score_agent(app: faust.App, table: Any, guard: GapGuard, processor: Processor,
                 metrics: ScoringMetrics, topics: Topics, clock: SharedClock | None,
                 settings: ScoringSettings) -> None:
    source = app.topic(topics.events, **RAW)
    outputs = [app.topic(name, **RAW) for name in (topics.scored_events, topics.deadletter)]

    def handle(key: bytes | None, value: bytes | None, origin: Origin,
               timestamp_ms: int, headers: Any, event: Any, pending: Pending) -> None:
        started = time.perf_counter()
        if clock is not None:  # the moved clock's now is as good a "now" as the producer's
            timestamp_ms = max(timestamp_ms, int(clock.now().timestamp() * 1000))
        result = processor.process(
            key=key, value=value, origin=origin, timestamp_ms=timestamp_ms,
            state=pending.get(key) if key is not None else None, now=datetime.now(UTC),
            headers=list(headers.items() if isinstance(headers, Mapping) else headers or ()))
        if key is not None:
            pending.put(key, result, event)
        for out in result.out:  # one record batch per partition (workarounds 7 and 11)
            pending.records.add(out.topic, out.key, out.value, out.headers)
        _observe(metrics, result, time.perf_counter() - started)

    @app.agent(source)
    async def score(stream: StreamT[bytes]) -> None:
        for topic in outputs:  # created before the first send, with our partitions
            await topic.maybe_declare()
        faust_stream = cast(Stream[bytes], stream)
        producer = cast(Any, app.producer)._ensure_producer()  # aiokafka's (workaround 11)
        records = RecordBatches(producer)  # where the processor's outputs may go:
        await records.learn(topics.scored_events, topics.deadletter, topics.events)
        pending = Pending(table.data, faust_stream._set_current_event,  # private (9)
                          records, table.changelog_topic.get_topic_name(),
                          cache_leads=settings.state_cache_leads)
        async for batch in batches(faust_stream, most=settings.batch_max,
                                   within=settings.batch_wait_ms / 1000.0):
            for event in batch:
                msg = event.message
                # records faust skipped and acked during a rebalance come first (workaround 1)
                for rec in await guard.missing(msg.tp, msg.offset, app.consumer_generation_id):
                    metrics.reread.inc()
                    handle(rec.key, rec.value, Origin(rec.topic, rec.partition, rec.offset),
                           rec.timestamp, rec.headers, event, pending)  # `event`'s partition
                handle(msg.key, msg.value, Origin(msg.topic, msg.partition, msg.offset),
                       int(msg.timestamp * 1000) if msg.timestamp else 0, msg.headers,
                       event, pending)
                guard.handled(msg.tp, msg.offset)
            pending.write()
            # acked (below, by `batches`) only once its outputs and changelog are stored
            pending.persisted(await pending.records.delivered())


async def batches(stream: Stream[bytes], *, most: int,
                  within: float) -> AsyncIterator[list[EventT[bytes]]]:
    """The stream's events in batches of up to `most`, each yielded `within` seconds after its
    first event arrived (or once full), and acked once the caller is done with it (workaround
    8). Like faust's `Stream.take_events`, whose loop wakes every `within` even when no event
    comes (about 5% of a core at 5 ms): this one waits for the first event without a timer."""
    buffer: list[EventT[bytes]] = []
    arrived, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def collect(value: bytes) -> bytes:  # run by the stream for each event, in order
        event = stream.current_event
        if event is None:
            raise RuntimeError("a batched event without its message")
        buffer.append(event)
        arrived.set()
        if len(buffer) >= most:
            full.set()
            room.clear()
            await room.wait()  # no more than `most`: the stream waits for the caller
        return value

    stream.enable_acks = False  # acked below, after the caller's table writes
    stream.add_processor(collect)
    stream._enable_passive(cast(ChannelT[bytes], aiter(stream.channel)))  # private (8)
    while not stream.should_stop:
        await arrived.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(full.wait(), within)
        events = buffer[:]
        buffer.clear()
        arrived.clear()
        full.clear()
        room.set()
        yield events
        for event in events:
            await stream.ack(event)


def _observe(metrics: ScoringMetrics, result: Result, seconds: float) -> None:
    metrics.counted(result.event_type, result.outcome)
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


async def ensure_changelog(app: faust.App, kafka: KafkaSettings, *, partitions: int,
                           replication_factor: int) -> str:
    """Create the table's compacted changelog topic before the worker starts, as every topic is
    created (explicitly, docs/architecture.md): left to faust, two workers starting together on a
    fresh cluster sometimes both skipped it, and every table write then failed (PartitionsMismatch:
    the changelog 'has 0 partitions'). Returns the topic's name."""
    name: str = app.tables[TABLE].changelog_topic.get_topic_name()
    admin = make_admin(kafka, client_id="nurture-scoring")
    await admin.start()
    try:
        if name not in set(await admin.list_topics()):  # False from create: the other was first
            await create_topic(admin, NewTopic(
                name=name, num_partitions=partitions, replication_factor=replication_factor,
                topic_configs={"cleanup.policy": "compact"}))
    finally:
        await admin.close()
    return name


# --- workaround 1: the gap guard --------------------------------------------------------------
# Where the stream should have started cannot be the group's committed offset read when the
# first record arrives: faust may already have committed past the skipped record by then. So the
# guard keeps its own account, which faust's acks cannot move:
# - `done`: past every record this process handled, per partition;
# - the *handled* group (`handled_group`): offsets committed by the guard itself, each the smaller
#   of faust's committed offset (whose outputs were flushed before the commit) and `done` (what
#   was really handled), so a restarted or rebalanced worker knows where the last one truly was;
# - the group's committed offsets read at start-up, before this process's faust could commit
#   anything: the answer before the handled group has one (the first run of this version).


def handled_group(group_id: str) -> str:
    """The consumer group (never joined, only committed to) of the guard's own account."""
    return f"{group_id}-handled"


def gap(expected: int, offset: int) -> range:
    """Offsets skipped before `offset` when the next expected offset is `expected`."""
    if offset <= expected:
        return range(0)
    return range(expected, offset)


def start_offset(*, done: int | None, handled: int | None, at_startup: int | None) -> int | None:
    """Where a generation's stream should begin on a partition: past everything this process
    handled and past what the handled group vouches for; before the handled group has an
    offset, the group's committed offset as this process found it. None: nothing known (a
    group that never committed starts at the partition's beginning)."""
    vouched = handled if handled is not None else at_startup
    known = [offset for offset in (vouched, done) if offset is not None]
    return max(known) if known else None


def vouched(*, committed: int | None, done: int | None) -> int | None:
    """The handled group's offset: below it every record was handled (`done`) and its outputs
    flushed (faust flushes the producer before it commits `committed`)."""
    if committed is None or done is None:
        return None
    return min(committed, done)


def _tp(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class GapGuard:
    """Tracks the next expected offset per input partition within one group generation."""

    def __init__(self, kafka: KafkaSettings, group_id: str,
                 at_startup: Mapping[TopicPartition, int] | None = None) -> None:
        self.kafka, self.group_id = kafka, group_id
        self.at_startup = {_tp(tp): offset for tp, offset in (at_startup or {}).items()}
        self.generation: int | None = None
        self.expected: dict[TopicPartition, int] = {}
        self.done: dict[TopicPartition, int] = {}
        self.recorded: dict[TopicPartition, tuple[int, float]] = {}  # offset, when (monotonic)
        self._reader: AIOKafkaConsumer | None = None
        self._recorder: AIOKafkaConsumer | None = None

    async def missing(self, tp: Any, offset: int,
                      generation: int) -> list[ConsumerRecord[Any, Any]]:
        """The records of `tp` before `offset` that the agent should have seen and did not.
        Nothing moves on until `handled`: if handling them or the record fails, the next record
        shows the same gap again."""
        tp = _tp(tp)
        if generation != self.generation:  # a rebalance: faust re-seeked to committed offsets
            self.generation, self.expected = generation, {}
        expected = self.expected.get(tp)
        if expected is None:
            expected = self.expected[tp] = await self._start(tp)
        skipped = gap(expected, offset)
        if not skipped:
            return []
        log.warning("re-reading records the stream skipped", extra={
            "topic": tp.topic, "partition": tp.partition,
            "from_offset": skipped.start, "to_offset": skipped.stop - 1})
        return await self._read(tp, skipped)

    async def _start(self, tp: TopicPartition) -> int:
        handled = (await committed(self.kafka, handled_group(self.group_id), [tp])).get(tp)
        if handled is not None and handled > self.recorded.get(tp, (-1, 0.0))[0]:
            self.recorded[tp] = (handled, time.monotonic())  # never record below it
        start = start_offset(done=self.done.get(tp), handled=handled,
                             at_startup=self.at_startup.get(tp))
        if start is None:
            start = (await (await self._consumer()).beginning_offsets([tp]))[tp]
        return start

    def handled(self, tp: Any, offset: int) -> None:
        """The agent handled the record at `offset` (its outputs are with the producer), and
        the gap before it."""
        tp = _tp(tp)
        self.expected[tp] = max(self.expected.get(tp, 0), offset + 1)
        self.done[tp] = max(self.done.get(tp, 0), offset + 1)

    async def record(self, committed_offsets: Mapping[Any, int], assigned: Collection[Any]) -> None:
        """Commit to the handled group what it can vouch for on the `assigned` partitions, given
        faust's `committed_offsets`; called periodically. An unchanged offset is committed again
        every `REFRESH_SECONDS`: the broker forgets a memberless group's offsets some days
        (`offsets.retention.minutes`) after their last commit. A failure is logged and retried
        on the next call (the handled group lagging only means re-reading a few more records)."""
        now = time.monotonic()
        offsets: dict[TopicPartition, int] = {}
        for tp in map(_tp, assigned):
            offset = vouched(committed=committed_offsets.get(tp), done=self.done.get(tp))
            last, at = self.recorded.get(tp, (-1, 0.0))
            if offset is not None and offset > last:
                offsets[tp] = offset
            elif last >= 0 and now - at >= REFRESH_SECONDS:
                offsets[tp] = last
        if not offsets:
            return
        try:
            recorder = await self._recorder_for(offsets)
            await recorder.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as exc:
            log.warning("could not record the handled offsets", extra={"error": repr(exc)})
            return
        self.recorded.update((tp, (o, now)) for tp, o in offsets.items())

    async def _recorder_for(self, offsets: Mapping[TopicPartition, int]) -> AIOKafkaConsumer:
        """A consumer of the handled group that fetches nothing: assigned (aiokafka commits only
        for assigned partitions) and paused."""
        if self._recorder is None:
            self._recorder = await _started(make_consumer(
                self.kafka, group_id=handled_group(self.group_id), client_id=CLIENT_ID))
        wanted = set(offsets) | self._recorder.assignment()
        if wanted != self._recorder.assignment():
            self._recorder.assign(sorted(wanted))
            self._recorder.pause(*wanted)
        return self._recorder

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = await _started(AIOKafkaConsumer(
                **connection_options(self.kafka, CLIENT_ID),
                enable_auto_commit=False, auto_offset_reset="earliest",
                isolation_level="read_committed"))
        return self._reader

    async def _read(self, tp: TopicPartition, offsets: range) -> list[ConsumerRecord[Any, Any]]:
        reader = await self._consumer()
        reader.assign([tp])
        reader.seek(tp, offsets.start)
        records: list[ConsumerRecord[Any, Any]] = []
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            batch = await reader.getmany(tp, timeout_ms=500)
            records += [r for r in batch.get(tp, []) if r.offset < offsets.stop]
            if await reader.position(tp) >= offsets.stop:
                return records
        raise RuntimeError(f"could not re-read {tp.topic}[{tp.partition}] "
                           f"offsets {offsets.start}..{offsets.stop - 1}")

    async def stop(self) -> None:
        for consumer in (self._reader, self._recorder):
            if consumer is not None:
                await consumer.stop()
        self._reader = self._recorder = None


def _retriable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError) and exc.retriable


async def _started(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """`consumer`, started; closed again if it could not start (so the next call retries)."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def committed(kafka: KafkaSettings, group_id: str,
                    partitions: list[TopicPartition] | None = None,
                    ) -> dict[TopicPartition, int]:
    """The group's committed offsets (of `partitions`, else all it has), without joining it.
    Waits (with backoff, logging why) while the broker has no coordinator for the group yet, as
    on a fresh cluster whose offsets topic is still being created."""
    retrying = AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=5), retry=retry_if_exception(_retriable),
        before_sleep=lambda state: log.warning(
            "waiting for the group coordinator", extra={
                "group": group_id, "attempt": state.attempt_number,
                "reason": repr(state.outcome.exception()) if state.outcome else ""}))
    async for attempt in retrying:
        with attempt:
            admin = make_admin(kafka, client_id=CLIENT_ID)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(group_id,
                                                                  partitions=partitions)
            finally:
                await admin.close()
            return {_tp(tp): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    raise AssertionError("unreachable")  # pragma: no cover


# --- workarounds 2 and 3: the beats the probes read ------------------------------------------


class Heartbeat(mode.Service):
    """Beats `health` on the worker's loop; pass it to faust.Worker, which starts it first
    (workaround 3). It also reports a table recovery that has stopped receiving changelog
    records (workaround 13): the app's timers do not run until the recovery is done."""

    def __init__(self, health: Health, **kwargs: Any) -> None:
        self.health = health
        self.recovery_stalls = Stalls()
        super().__init__(**kwargs)

    @mode.Service.task
    async def _beat(self) -> None:
        while not self.should_stop:
            self.health.beat = self.health.clock()
            await self.sleep(BEAT_SECONDS)

    @mode.Service.task
    async def _watch_recovery(self) -> None:
        while not self.should_stop:
            await self.sleep(LAG_SECONDS)
            app = self.health.app
            if app is None or not app.in_recovery:
                continue
            try:  # a report that fails must not stop the liveness beat's service
                stalled = report_recovery_stalls(app, self.recovery_stalls, time.monotonic())
                await _reread_changelog(app, stalled)
            except Exception:
                log.exception("the table recovery's stall report failed")


def report_recovery_stalls(app: Any, stalls: Stalls, now: float) -> list[Any]:
    """Warn of each changelog partition the table recovery still has records to read from and
    has read none of for `stalls.after` seconds, with what the consumer holds and where faust's
    fetch loop waits; those partitions."""
    recovery = app.tables.recovery
    offsets, highwaters = recovery.active_offsets, recovery.active_highwaters
    lag = {tp: max(0, highwaters[tp] - offsets[tp]) for tp in list(recovery.active_tps)}
    stalled = stalls.observe(now, lag, offsets)
    if stalled:
        log.warning("the table recovery has changelog records to read and has read none for "
                    "%.0f s; re-reading them", stalls.after, extra={
                        "partitions": sorted(map(partition_name, stalled)),
                        "recovery": {partition_name(tp): {"read": offsets[tp],
                                                          "last": highwaters[tp]}
                                     for tp in stalled},
                        "consumer": consumer_state(app), "tasks": watched_tasks()})
    return stalled


async def _reread_changelog(app: Any, stalled: list[Any]) -> None:
    """Seek each stalled changelog partition to the record after the last one the recovery
    read (a record read twice is written to the table twice, with the same value)."""
    offsets = app.tables.recovery.active_offsets
    for tp in stalled:
        if app.in_recovery and app.consumer.flow_active:
            await app.consumer.seek(tp, offsets[tp] + 1)


def watch(health: Health, app: Any, source: str | None = None) -> None:
    """Beat `health` from a timer of the faust `app` (run once its tables are recovered), read
    its recovery flag, and watch the commits of its input topic `source` (workaround 2)."""
    health.app = app

    async def app_heartbeat() -> None:
        health.app_beat = health.clock()
        if source is None:
            return
        mine = set(app.consumer.assignment())
        monitor = app.monitor
        health.commits.observe(health.app_beat, committed=monitor.tp_committed_offsets, read={
            tp: offset for tp, offset in monitor.tp_read_offsets.items()
            if tp.topic == source and tp in mine})

    app.timer(interval=BEAT_SECONDS, name="nurture-health")(app_heartbeat)
