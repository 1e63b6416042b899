"""`python -m deploy.demo.sample`: a file of recorded events to try the dry runs on.

    python -m deploy.demo.sample [--leads 250] [--days 90] [--seed 7] [--start 2026-09-01]
                                 [--out samples/events.jsonl]

The same simulated population as `make demo` (deploy/demo/personas.py: researchers, evaluators,
buyers and drive-by visitors, with their page views, pricing visits, downloads, webinars and
demo requests), day by day, as CloudEvents in time order, one JSON object per line. Nobody reacts
to a message here (a file has no inbox), so the stream is what the leads do on their own. The
same arguments give the same bytes: `samples/events.jsonl` is this command with its defaults
(a test checks it).

    nurture-scoring backtest --events samples/events.jsonl
    nurture-orchestrator simulate --events samples/events.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from deploy.demo import personas as p

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "samples" / "events.jsonl"


def sample(leads: int, days: int, seed: int, start: datetime) -> Iterator[dict[str, Any]]:
    """The population's events over `days` from `start`, in time order."""
    population = p.population(leads, days, seed)
    states = {lead.lead_id: p.LeadState() for lead in population}
    origin = start.timestamp()
    for day in range(days):
        t0, t1 = day * p.DAY, (day + 1) * p.DAY
        batch = []
        for lead in population:
            if lead.arrives >= t1:
                break  # sorted by arrival
            events, states[lead.lead_id] = p.plan(lead, states[lead.lead_id], t0, t1, seed)
            batch += [(ev.at, p.cloudevent(lead.lead_id, f"{day}-{i}", ev, origin))
                      for i, ev in enumerate(events)]
        batch.sort(key=lambda item: (item[0], item[1]["id"]))
        yield from (event for _, event in batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=250, help="people (%(default)s)")
    parser.add_argument("--days", type=int, default=90, help="days of events (%(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="(%(default)s)")
    parser.add_argument("--start", type=datetime.fromisoformat, default="2026-09-01",
                        help="the first day, UTC (%(default)s)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="file, or - for stdout "
                        "(default: samples/events.jsonl)")
    args = parser.parse_args(argv)
    start = args.start.replace(tzinfo=args.start.tzinfo or UTC)
    lines = [orjson.dumps(e) + b"\n" for e in sample(args.leads, args.days, args.seed, start)]
    if args.out == "-":
        sys.stdout.buffer.writelines(lines)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(b"".join(lines))
        print(f"wrote {len(lines):,} events of {args.leads:,} leads over {args.days} days "
              f"to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
