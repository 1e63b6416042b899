"""Bounded state: rows that only serve idempotency or history are deleted once they are older
than a retention, so no table grows without bound in a long run. Each service says which rows
may go (its `adapters/retention.py`, a tuple of `Rule`s); this module deletes them, in batches
of one short transaction each, so a large backlog never holds a long lock or a long transaction
(docs/reliability.md, "Bounded state")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import ColumnElement, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.kafka.topics import SPECS

log = logging.getLogger(__name__)
BATCH = 1000
ONE_DAY = timedelta(days=1)
# Kafka deletes a whole log segment once its newest record is past `retention.ms`, and rolls a
# segment after `segment.ms` (7 days by default) at the latest: a record can outlive the
# topic's retention by that much.
SEGMENT_SLACK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Rule:
    """The rows of `table` that may be deleted: `old(cutoff)` is their WHERE clause (it names the
    cutoff, and must match an index so a batch does not scan the table). `name` is the metric
    label. The table needs a one-column primary key."""

    name: str
    table: Table
    old: Callable[[datetime], ColumnElement[bool]]


async def delete_batch(conn: AsyncConnection, rule: Rule, *, cutoff: datetime,
                       limit: int) -> int:
    """Delete at most `limit` rows of `rule` older than `cutoff`; how many. The rows are chosen
    and locked by one subselect (`FOR UPDATE SKIP LOCKED`): a row another transaction holds is
    left for a later round, and a row changed since (a failed delivery sent back to pending by
    a replay) is locked in its new version and checked again, so only rows that still match
    are deleted."""
    (key,) = rule.table.primary_key.columns
    chosen = (select(key).where(rule.old(cutoff)).limit(limit)
              .with_for_update(skip_locked=True).correlate(None))
    result = await conn.execute(delete(rule.table).where(key.in_(chosen)))
    return int(result.rowcount or 0)


def pruned_rows(registry: CollectorRegistry, service: str, rules: Sequence[Rule]) -> Counter:
    """`nurture_<service>_pruned_rows_total{table}`, every table of `rules` at 0 from the
    start."""
    counter = Counter(f"nurture_{service}_pruned_rows_total",
                      "Rows deleted once older than the retention (idempotency marks and "
                      "finished records), by table.", ["table"], registry=registry)
    for rule in rules:
        counter.labels(rule.name)
    return counter


@dataclass
class Pruner:
    """Deletes the rows of `rules` older than `retention`, counted in `counter`."""

    engine: AsyncEngine
    rules: Sequence[Rule]
    retention: timedelta
    counter: Counter
    batch: int = BATCH
    dedupes: str | None = None
    """The topic (`services.common.kafka.topics.SPECS` name) whose redeliveries the rows dedupe."""

    def __post_init__(self) -> None:
        spec = next((s for s in SPECS if s.name == self.dedupes), None)
        if spec is None:
            return
        kept = timedelta(milliseconds=spec.retention_ms) + SEGMENT_SLACK
        if self.retention <= kept:
            log.warning("retention shorter than the topic keeps records: a record redelivered "
                        "after its mark was pruned is processed again", extra={
                            "topic": spec.name, "retention_days": self.retention / ONE_DAY,
                            "topic_keeps_days": kept / ONE_DAY})

    async def prune(self, *, now: datetime) -> dict[str, int]:
        """One round: each rule batch by batch (a transaction each) until a batch comes back
        short; the rows deleted per table. Rows only get older, so a round ends."""
        cutoff = now - self.retention
        pruned: dict[str, int] = {}
        for rule in self.rules:
            total, done = 0, self.batch
            while done == self.batch:
                async with self.engine.begin() as conn:
                    done = await delete_batch(conn, rule, cutoff=cutoff, limit=self.batch)
                total += done
            pruned[rule.name] = total
            self.counter.labels(rule.name).inc(total)
        if any(pruned.values()):
            log.info("old rows pruned", extra={"pruned": pruned, "cutoff": cutoff.isoformat(),
                                               "retention_days": self.retention / ONE_DAY})
        return pruned

