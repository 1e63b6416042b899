"""When has the pipeline caught up? Polled after every simulated step, never slept on.

Settled means: every consumer group of this run has consumed its topic to the end, the
orchestrator has no unpublished outbox rows and no timer due on its clock, dispatch has no
delivery in flight and no unpublished outcome, and nothing new reached Kafka since the last
poll (so a record in flight between two services cannot slip through)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.kafka.topics import Topics


@dataclass(frozen=True)
class Backlog:
    lag: int
    orchestrator_outbox: int
    timers_due: int
    deliveries_open: int
    dispatch_outbox: int
    end_offsets: int

    def empty(self) -> bool:
        return not (self.lag or self.orchestrator_outbox or self.timers_due
                    or self.deliveries_open or self.dispatch_outbox)


class Settler:
    def __init__(self, *, bootstrap: str, prefix: str, engine: AsyncEngine,
                 orchestrator_schema: str, dispatch_schema: str) -> None:
        topics = Topics(prefix)
        self.groups = {f"{prefix}nurture-scoring": topics.events,
                       f"{prefix}nurture-dispatch-suppressions": topics.events,
                       f"{prefix}nurture-orchestrator": topics.scored_events,
                       f"{prefix}nurture-dispatch": topics.dispatch}
        self.bootstrap, self.engine = bootstrap, engine
        o, d = orchestrator_schema, dispatch_schema
        self.sql = text(f"""
SELECT (SELECT count(*) FROM "{o}".outbox WHERE parked_reason IS NULL),
       (SELECT count(*) FROM "{o}".timers WHERE due_at <= now() + make_interval(
            secs => coalesce((SELECT max(offset_seconds) FROM "{o}".clock), 0))),
       (SELECT count(*) FROM "{d}".deliveries WHERE status IN ('pending', 'sending')),
       (SELECT count(*) FROM "{d}".outbox WHERE parked_reason IS NULL)""")  # noqa: S608
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        await self.consumer.topics()
        for topic in set(self.groups.values()):
            parts = self.consumer.partitions_for_topic(topic) or set()
            self.partitions[topic] = [TopicPartition(topic, p) for p in sorted(parts)]

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def backlog(self) -> Backlog:
        every = [tp for tps in self.partitions.values() for tp in tps]
        ends = await self.consumer.end_offsets(every)
        lag = 0
        for group, topic in self.groups.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            for tp in self.partitions[topic]:
                meta = committed.get(tp)
                lag += ends[tp] - max(meta.offset if meta is not None else 0, 0)
        async with self.engine.connect() as conn:
            row = (await conn.execute(self.sql)).one()
        return Backlog(lag, int(row[0]), int(row[1]), int(row[2]), int(row[3]),
                       sum(ends.values()))

    async def wait(self, *, limit: float) -> Backlog:
        """Poll until settled on two polls in a row with no new records; the last backlog."""
        deadline = time.monotonic() + limit
        previous: Backlog | None = None
        while True:
            now = await self.backlog()
            if now.empty() and previous is not None and previous.empty() \
                    and previous.end_offsets == now.end_offsets:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"the pipeline did not settle in {limit:.0f}s: {now}")
            previous = now
            await asyncio.sleep(0.25)
