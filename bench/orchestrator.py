"""4. Orchestrator, against PostgreSQL: scored events/s through the real
`Handlers.handle_scored_events` (one transaction per polled batch of up to 500, set-based writes)
against a naive loop doing the same writes with one transaction per event (the same repository
calls, a batch of one each; the project has no ORM models, so this is SQLAlchemy Core per event).
Stage transitions and commands written are counted from the database afterwards.

Timers: the timers those events scheduled are re-dated to come due over the next seconds, and the
real timer loop (`loop(orch.handlers.fire_timers, ..., timer_poll_seconds)`) fires them: timers/s
and lateness (fired at - due at) p50/p99.

Scores that age: with one `score` timer pending per lead (the time decay alone crosses a
threshold), for 1,000 leads and for the largest lead count of the growth sizes (1M), the cost of
moving crossings (the upsert each scored event makes, in batches of 500, through the real
repository) and of taking the due ones (`claim_due`, rounds of 200): neither may grow with the
number of leads (the timers are found by index, never by a scan).

The sales ranking (`GET /v1/leads`, `PgViews.ranking`) at 1,000 leads and at the largest lead
count: the first page of 50 (all leads, and one stage) and the pages that follow (through the
cursor), as of a time that moves: the order of decayed scores comes from an index, so the cost
may not grow with the number of leads."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import ConsumerRecord
from sqlalchemy import event, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.backtest import scored_lines
from bench.core import ROOT, Sizes, Stopwatch, absolute, compare, events, latency_ms, rate
from bench.infra import Infra, poll
from services.common.config.settings import KafkaSettings
from services.common.db.engine import make_engine
from services.common.kafka.loops import loop
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters import tables as t
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.adapters.program_files import load_policy, load_programs
from services.orchestrator.adapters.queries import PgViews
from services.orchestrator.bootstrap import Orchestrator, bootstrap
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.effects import Effects, Timer
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.settings import OrchestratorSettings

BATCH = 500
TIMER_SPREAD_SECONDS = 3.0
HOP_BATCH = 20  # about what one poll brings the orchestrator at 600 events/s end to end


def records(lines: list[bytes], topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    out = []
    for offset, value in enumerate(lines):
        out.append(ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), ()))
    return out


def decider() -> Decider:
    return Decider(load_programs(sorted((ROOT / "config" / "programs").glob("*.yaml"))),
                   load_policy(ROOT / "config" / "contact-policy.yaml"), stage_model="b2b")


async def orchestrator(infra: Infra, what: str) -> Orchestrator:
    schema = infra.schema(what)
    await asyncio.to_thread(upgrade, infra.database_url, schema)
    engine = make_engine(infra.database_url, schema=schema)  # the services' own factory
    settings = OrchestratorSettings(DATABASE_URL=infra.database_url,  # type: ignore[call-arg]
                                    db_schema=schema)
    return bootstrap(settings, KafkaSettings(), decider(), engine=engine, topics=Topics("bench."),
                     metrics=OrchestratorMetrics(new_registry()), run_workers=False)


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {name: int((await conn.execute(select(func.count()).select_from(table)))
                          .scalar_one())
                for name, table in (("stage_transitions", t.stage_history),
                                    ("outbox_rows", t.outbox), ("timers", t.timers),
                                    ("leads", t.leads))}


class Lateness:
    """Stands in for the timer-lateness histogram, keeping every observation."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)


async def fire_timers(orch: Orchestrator, limit: int) -> dict[str, Any]:
    """Re-date up to `limit` pending timers over the next seconds; run the real timer loop until
    they are all fired."""
    now = datetime.now(UTC) + timedelta(seconds=0.5)
    rnd = random.Random(3)  # noqa: S311 - reproducible due times
    async with orch.engine.begin() as conn:
        ids = [r.id for r in await conn.execute(select(t.timers.c.id).limit(limit))]
        await conn.execute(update(t.timers).where(~t.timers.c.id.in_(ids))
                           .values(due_at=now + timedelta(days=3650)))
        for i in ids:
            await conn.execute(update(t.timers).where(t.timers.c.id == i).values(
                due_at=now + timedelta(seconds=rnd.random() * TIMER_SPREAD_SECONDS)))
    lateness = Lateness()
    orch.metrics.timer_lateness = lateness  # type: ignore[assignment]
    stop = asyncio.Event()
    clock = Stopwatch()
    task = asyncio.create_task(loop(orch.handlers.fire_timers, stop, 0.5, what="timers"))
    with contextlib.suppress(TimeoutError):  # reported as fired < timers
        await poll(lambda: len(lateness.values) >= len(ids), within=60, what="timers fired")
    elapsed = clock()
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return {"timers": len(ids), "fired": len(lateness.values),
            # all were due within TIMER_SPREAD_SECONDS: the rate the loop keeps up with
            "timers_per_s": rate(len(lateness.values), elapsed),
            "lateness": latency_ms(lateness.values)}


async def score_timers(infra: Infra, leads: int, due: int) -> dict[str, Any]:
    """`leads` leads with a score timer each (`due` of them due now): ms per upsert batch of 500
    moved crossings, ms per claim round of 200 due timers."""
    orch = await orchestrator(infra, "decay")
    try:
        async with orch.engine.begin() as conn:  # seeded in SQL: a million rows in seconds
            await conn.execute(text(
                "INSERT INTO timers (due_at, lead_id, kind, program_id, generation) "
                "SELECT now() + make_interval(secs => CASE WHEN g <= :due THEN -1 "
                "ELSE 86400 + g % 7776000 END), 'lead-' || g, 'score', 'b2b', 0 "
                "FROM generate_series(1, :n) AS g"), {"n": leads, "due": due})
            await conn.execute(text("ANALYZE timers"))
        rnd = random.Random(5)  # noqa: S311 - reproducible lead picks
        later = datetime.now(UTC).timestamp() + 30 * 86400
        upserts = []
        for _ in range(10):
            batch = [(f"lead-{rnd.randint(due + 1, leads)}",
                      Effects(timers=[Timer(later + rnd.random() * 86400, "score", "b2b")]))
                     for _ in range(500)]
            clock = Stopwatch()
            async with orch.handlers.uow() as uow:
                await uow.leads.save({}, batch)
            upserts.append(clock())
        claims, fired = [], 0
        while fired < due:
            clock = Stopwatch()
            async with orch.handlers.uow() as uow:
                taken = await uow.timers.claim_due(now=await uow.now(), limit=200)
            claims.append(clock())
            fired += len(taken)
            if not taken:
                break
        return {"leads": leads, "due": due, "fired": fired,
                "upsert_500": latency_ms(upserts), "claim_200": latency_ms(claims)}
    finally:
        await orch.engine.dispose()


async def ranking_cost(infra: Infra, leads: int) -> dict[str, Any]:
    """ms per page of 50 of the ranking over `leads` leads (20 fit values, three stages)."""
    orch = await orchestrator(infra, "rank")
    try:
        async with orch.engine.begin() as conn:  # seeded in SQL, a million rows in seconds
            await conn.execute(text(
                "INSERT INTO leads (lead_id, stage, state, updated_at) "
                "SELECT 'lead-' || g, (ARRAY['lead', 'mql', 'sql'])[1 + g % 3], "
                "'{\"scores\": {}, \"profile\": {}}', now() FROM generate_series(1, :n) AS g"),
                {"n": leads})
            await conn.execute(text(
                "INSERT INTO lead_scores (model, lead_id, fit, sign, key, half_life, stage) "
                "SELECT 'b2b', 'lead-' || g, 5 * (g % 20), 1, "
                "ln(1 + random() * 150) / ln(2) + (1790000000 + random() * 7776000) / 2592000.0, "
                "2592000, (ARRAY['lead', 'mql', 'sql'])[1 + g % 3] "
                "FROM generate_series(1, :n) AS g"), {"n": leads})
            await conn.execute(text("ANALYZE leads"))
            await conn.execute(text("ANALYZE lead_scores"))
        views = PgViews(orch.engine)
        first, staged, following = [], [], []
        for i in range(10):
            t = 1_800_000_000.0 + i * 86400 * 7
            clock = Stopwatch()
            rows, cursor = await views.ranking(model="b2b", t=t, limit=50, cursor=None)
            first.append(clock())
            clock = Stopwatch()
            await views.ranking(model="b2b", t=t, limit=50, cursor=None, stage="mql")
            staged.append(clock())
            for _ in range(3):
                clock = Stopwatch()
                rows, cursor = await views.ranking(model="b2b", t=t, limit=50, cursor=cursor)
                following.append(clock())
        return {"leads": leads, "pages": len(rows), "first_page": latency_ms(first),
                "first_page_one_stage": latency_ms(staged), "next_pages": latency_ms(following)}
    finally:
        await orch.engine.dispose()


async def burst_fire(orch: Orchestrator) -> float:
    """Every remaining timer made due at once, fired in rounds of 200: timers/s."""
    async with orch.engine.begin() as conn:
        await conn.execute(update(t.timers).values(due_at=datetime.now(UTC)))
        pending = (await conn.execute(select(func.count()).select_from(t.timers))).scalar_one()
    clock = Stopwatch()
    fired = 0
    while n := await orch.handlers.fire_timers():
        fired += n
    return rate(fired, clock()) if pending else 0.0


class RoundTrips:
    """Counts the statements a unit of work sends (BEGIN and COMMIT included) and the wall
    time inside the driver's execute calls (parameter encoding, the round trip, PostgreSQL's
    work), through SQLAlchemy's engine events."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count, self.seconds, self._started = 0, 0.0, 0.0
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "begin", self._one)
        event.listen(sync, "commit", self._one)

    def _before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.count += 1
        self.seconds += time.perf_counter() - self._started

    def _one(self, *_: Any) -> None:
        self.count += 1


async def hop_batches(infra: Infra, recs: list[ConsumerRecord[bytes, bytes]]
                      ) -> dict[str, Any]:
    """Where a batch of the size the end-to-end hop sees goes: per batch, its wall time, the
    statements it sends and the time inside them (`RoundTrips`), and the orchestrator's own
    CPU (all the events, in a schema of its own)."""
    orch = await orchestrator(infra, "hop")
    batches = [recs[i:i + HOP_BATCH] for i in range(0, len(recs), HOP_BATCH)]
    try:
        await orch.handlers.handle_scored_events(batches[0])  # statements prepared once
        trips = RoundTrips(orch.engine)
        clock, cpu = Stopwatch(), time.process_time()
        for batch in batches[1:]:
            await orch.handlers.handle_scored_events(batch)
        seconds, cpu = clock(), time.process_time() - cpu
    finally:
        await orch.engine.dispose()
    n = len(batches) - 1
    return {"events_per_batch": HOP_BATCH, "batches": n, "wall_ms": round(seconds * 1e3 / n, 2),
            "round_trips": round(trips.count / n, 1),
            "in_statements_ms": round(trips.seconds * 1e3 / n, 2),
            "cpu_ms": round(cpu * 1e3 / n, 2)}


async def run(infra: Infra, sizes: Sizes) -> dict[str, Any]:
    n = sizes.orch_events
    items = events(n, max(10, n // 4), seed=6, hot_share=0.1)
    lines = scored_lines(items)  # the real scorer's output for these events
    recs = records(lines, "bench.scored")
    real, naive = await orchestrator(infra, "real"), await orchestrator(infra, "naive")
    try:
        clock, cpu = Stopwatch(), time.process_time()
        for i in range(0, len(recs), BATCH):
            await real.handlers.handle_scored_events(recs[i:i + BATCH])
        real_seconds, real_cpu = clock(), time.process_time() - cpu
        clock, cpu = Stopwatch(), time.process_time()
        for rec in recs:
            await naive.handlers.handle_scored_events([rec])
        naive_seconds, naive_cpu = clock(), time.process_time() - cpu
        real_counts, naive_counts = await counts(real.engine), await counts(naive.engine)
        hop = await hop_batches(infra, recs)
        timers = await fire_timers(real, sizes.timers)
        burst = await burst_fire(naive)
        small = await score_timers(infra, 1000, sizes.timers // 2)
        large = await score_timers(infra, sizes.growth_leads[-1], sizes.timers // 2)
        few, many = await ranking_cost(infra, 1000), await ranking_cost(infra,
                                                                         sizes.growth_leads[-1])
    finally:
        await real.engine.dispose()
        await naive.engine.dispose()
    real_rate, naive_rate = rate(len(recs), real_seconds), rate(len(recs), naive_seconds)
    transitions = real_counts["stage_transitions"]
    return {
        "measured": {"events": len(recs), "real": real_counts, "naive": naive_counts,
                     "real_events_per_s": real_rate, "naive_events_per_s": naive_rate,
                     "real_cpu_us_per_event": round(real_cpu * 1e6 / len(recs), 1),
                     "naive_cpu_us_per_event": round(naive_cpu * 1e6 / len(recs), 1),
                     "stage_transitions_per_s": rate(transitions, real_seconds),
                     "commands_and_records_written_per_s": rate(real_counts["outbox_rows"],
                                                                real_seconds),
                     "hop_batch": hop, "timer_loop": timers, "timer_burst_per_s": burst,
                     "score_timers": {"small": small, "large": large},
                     "ranking": {"small": few, "large": many}},
        "comparisons": [
            compare("orchestrator scored events", real_rate, naive_rate, target=10.0,
                    unit="events/s", baseline_name="one transaction per event, same writes",
                    extra={"same_writes": real_counts == naive_counts}),
            compare("orchestrator CPU per scored event (its process; PostgreSQL apart)",
                    real_cpu * 1e6 / len(recs), naive_cpu * 1e6 / len(recs), target=None,
                    unit="µs", baseline_name="one transaction per event",
                    higher_is_better=False),
            compare("orchestrator stage transitions", rate(transitions, real_seconds),
                    rate(naive_counts["stage_transitions"], naive_seconds), target=10.0,
                    unit="transitions/s", baseline_name="one transaction per event"),
            absolute(f"orchestrator batch of {HOP_BATCH} (a hop's size): wall time", hop["wall_ms"],
                     unit="ms", target=None, higher_is_better=False, extra={
                         k: hop[k] for k in ("round_trips", "in_statements_ms", "cpu_ms")}),
            absolute("timer lateness p99", timers["lateness"]["p99_ms"], unit="ms",
                     target=1000.0, higher_is_better=False),
            absolute("timer firing (all due at once, rounds of 200)", burst, unit="timers/s",
                     target=None),
            compare(f"score timers: move 500 crossings, {large['leads']:,} leads",
                    large["upsert_500"]["p50_ms"], small["upsert_500"]["p50_ms"], target=2.0,
                    unit="ms", baseline_name="the same at 1,000 leads", higher_is_better=False),
            compare(f"score timers: take 200 due, {large['leads']:,} leads",
                    large["claim_200"]["p50_ms"], small["claim_200"]["p50_ms"], target=2.0,
                    unit="ms", baseline_name="the same at 1,000 leads", higher_is_better=False),
            compare(f"ranking by score now: first page of 50, {many['leads']:,} leads",
                    many["first_page"]["p50_ms"], few["first_page"]["p50_ms"], target=2.0,
                    unit="ms", baseline_name="the same at 1,000 leads", higher_is_better=False,
                    extra={"p99_ms": many["first_page"]["p99_ms"]}),
            compare(f"ranking by score now: next pages, {many['leads']:,} leads",
                    many["next_pages"]["p50_ms"], few["next_pages"]["p50_ms"], target=2.0,
                    unit="ms", baseline_name="the same at 1,000 leads", higher_is_better=False,
                    extra={"p99_ms": many["next_pages"]["p99_ms"]}),
        ],
    }
