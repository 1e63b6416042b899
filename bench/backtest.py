"""3. Backtest, on one core, no Kafka: events/s of the scoring backtest (JSON lines decoded and
replayed through the real engine, as `nurture-scoring backtest` does) and of the program dry-run
(`nurture-orchestrator simulate`: the real Decider over scored events, timers included).

How cost grows: the scoring backtest at 10k / 100k / 1M leads (2 events per lead), each size
in a child process of its own, so its resident-memory growth is the state of those leads alone:

    python -m bench.backtest LEADS    # prints {"leads", "events", "events_per_s", "rss_mb"}"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.core import ROOT, Sizes, Stopwatch, absolute, events, iter_events, rate
from bench.infra import Infra
from schemas.records import ScoredEvent
from services.orchestrator.adapters.program_files import load_policy, load_programs
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.simulate import Simulation
from services.scoring.adapters.model_files import load_models
from services.scoring.domain.backtest import Replay
from services.scoring.entrypoints.score import Scorer
from services.scoring.service_layer.handlers import check_event, event_time

MODEL = str(ROOT / "config" / "scoring" / "b2b.yaml")
TARGET_EVENTS_PER_S = 100_000


def scoring_backtest(lines: list[bytes]) -> tuple[float, Replay]:
    """Replay JSON lines as the backtest CLI does; events/s."""
    replay = Replay(load_models([MODEL]))
    clock = Stopwatch()
    for line in lines:
        event = check_event(orjson.loads(line))
        replay.feed(event, event_time(event, 0))
    return rate(len(lines), clock()), replay


def scored_lines(items: list[dict[str, Any]]) -> list[bytes]:
    """Records of nurture.scored-events.v1 for `items`, from the real Processor (through the
    dry run's in-process scorer)."""
    scorer = Scorer.from_files([MODEL])
    return [scorer.score(e).to_bytes() for e in items]


def dry_run(lines: list[bytes]) -> float:
    """The program dry-run over scored-event lines (as `simulate` reads them); events/s."""
    decider = Decider(load_programs(sorted((ROOT / "config" / "programs").glob("*.yaml"))),
                      load_policy(ROOT / "config" / "contact-policy.yaml"), stage_model="b2b")
    sim = Simulation(decider)
    clock = Stopwatch()
    for line in lines:
        scored = ScoredEvent.from_bytes(line)  # as the orchestrator reads them
        sim.feed(scored.event, scored.score.models, event_time(scored.event, 0))
    sim.run_until(sim.clock + 30 * 86400)
    return rate(len(lines), clock())


def growth_point(leads: int) -> dict[str, Any]:
    """One size of the growth table (run in a child process: its RSS is this run's alone)."""
    replay = Replay(load_models([MODEL]))
    gc.collect()
    before = rss()
    n = 2 * leads
    clock = Stopwatch()
    for e in iter_events(n, leads, seed=11):
        line = orjson.dumps(e)
        event = check_event(orjson.loads(line))
        replay.feed(event, event_time(event, 0))
    seconds = clock()
    gc.collect()
    grown = rss() - before
    return {"leads": leads, "events": n, "events_per_s": rate(n, seconds),
            "rss_mb": round(grown / 2**20, 1), "rss_bytes_per_lead": round(grown / leads)}


def rss() -> int:
    """Resident bytes of this process now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def growth(sizes: Sizes) -> list[dict[str, Any]]:
    points = []
    for leads in sizes.growth_leads:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "bench.backtest", str(leads)], cwd=ROOT,
            capture_output=True, text=True, check=True, timeout=900)
        points.append(json.loads(done.stdout))
    return points


async def run(infra: Infra, sizes: Sizes) -> dict[str, Any]:
    del infra  # no Kafka, no database: the pure code paths
    n = sizes.backtest_events
    items = events(n, max(10, n // 10), seed=4, hot_share=0.05)
    lines = [orjson.dumps(e) for e in items]
    scoring_rate, _ = scoring_backtest(lines)
    scored = scored_lines(items[: max(1, n // 4)])
    simulate_rate = dry_run(scored)
    points = await growth(sizes)
    return {
        "measured": {"scoring_backtest_events_per_s": scoring_rate,
                     "dry_run_events_per_s": simulate_rate, "growth": points},
        "comparisons": [
            absolute("scoring backtest, one core", scoring_rate, unit="events/s",
                     target=TARGET_EVENTS_PER_S),
            absolute("program dry-run (simulate), one core", simulate_rate, unit="events/s",
                     target=None),
        ],
    }


if __name__ == "__main__":
    print(json.dumps(growth_point(int(sys.argv[1]))))
