"""`python -m deploy.soak` (`make soak`): one endurance run; prints the counting and the
endurance tables, writes `<out>/result.json`, `series.jsonl`, `lag.jsonl` and the charts, and
exits 0 only when it passed. `--small` is the size `make test` runs; `--record` copies the
result and the charts to deploy/soak/recorded/ (kept in the repo)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from deploy.chaos.load import EVENTS_PER_LEAD
from deploy.chaos.processes import fresh_run_dir
from deploy.chaos.scenario import ALL_FAULTS, program_steps
from deploy.chaos.tally import table as counting_table
from deploy.local.stack import ROOT, StackError
from deploy.soak import charts
from deploy.soak.rate import measured_rate
from deploy.soak.report import table
from deploy.soak.run import FAULTS, PROGRAM, SoakOptions, small, soak

RECORDED = Path(__file__).resolve().parent / "recorded"
FILES = ("result.json", "series.jsonl", "lag.jsonl", *charts.CHARTS)
RECORD = ("result.json", "series.jsonl", *charts.CHARTS)  # lag.jsonl: every 2 s, too long


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = SoakOptions(out=Path())
    parser = argparse.ArgumentParser(prog="python -m deploy.soak", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "soak",
                        help="run directory: logs/, result.json, series, charts "
                             "(default: %(default)s)")
    parser.add_argument("--minutes", type=float, help=f"length of the load ({d.minutes:g})")
    parser.add_argument("--fault-every", type=float,
                        help=f"seconds between faults ({d.fault_every:g})")
    parser.add_argument("--rate", type=float, help="leads per second (default: half the "
                                                   "measured maximum, see docs/soak.md)")
    parser.add_argument("--hold", type=float, help=f"seconds per fault ({d.hold:g})")
    parser.add_argument("--faults", help="comma-separated, taken in turn "
                                         f"(default: {','.join(FAULTS)})")
    parser.add_argument("--sample-every", type=float,
                        help=f"seconds between samples ({d.sample_every:g})")
    parser.add_argument("--retention", type=float, help="seconds dispatch and the "
                        f"orchestrator keep dedupe/history rows ({d.retention:g})")
    parser.add_argument("--prune-every", type=float,
                        help=f"seconds between their prune rounds ({d.prune_every:g})")
    parser.add_argument("--lag-bound", type=float, help="seconds after a restore by which "
                                                        f"lag must be back ({d.lag_bound:g})")
    parser.add_argument("--small", action="store_true",
                        help="the in-suite size: 2 minutes, 2 faults, short retention")
    parser.add_argument("--record", action="store_true",
                        help=f"copy the result and charts to {RECORDED.relative_to(ROOT)}/")
    return parser.parse_args(argv)


def options(args: argparse.Namespace) -> tuple[SoakOptions, str]:
    """The run's options from the arguments, and where its rate came from."""
    opts = small(args.out) if args.small else SoakOptions(out=args.out)
    given = {"minutes": args.minutes, "fault_every": args.fault_every, "hold": args.hold,
             "sample_every": args.sample_every, "retention": args.retention,
             "prune_every": args.prune_every, "lag_bound": args.lag_bound,
             "faults": tuple(f for f in args.faults.split(",") if f) if args.faults else None}
    opts = replace(opts, **{k: v for k, v in given.items() if v is not None})
    if args.rate is not None:
        return replace(opts, rate=args.rate), f"{args.rate:g} leads/s, as given"
    if args.small:
        return opts, f"{opts.rate:g} leads/s, the small run's"
    rate, source = measured_rate(events_per_lead=EVENTS_PER_LEAD,
                                 messages_per_lead=len(program_steps(PROGRAM)))
    return replace(opts, rate=rate), source


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts, source = options(args)
    unknown = set(opts.faults) - set(ALL_FAULTS)
    if unknown:
        print(f"unknown faults: {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}",
              file=sys.stderr)
        return 2
    print(f"[soak] {opts.minutes:g} min, a fault every {opts.fault_every:g} s, rate {source}")
    fresh_run_dir(args.out, also=FILES[1:])
    try:
        figures = asyncio.run(soak(opts))
    except (StackError, RuntimeError) as exc:
        print(f"[soak] the run could not complete: {exc}", file=sys.stderr)
        return 1
    figures["settings"]["rate_source"] = source
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (args.out / "result.json").write_text(json.dumps(figures, indent=2) + "\n")
    drawn = charts.draw(args.out, figures)
    print(counting_table(figures["counts"]))
    print()
    print(table(figures))
    print(f"[soak] result: {args.out / 'result.json'}; series: {args.out / 'series.jsonl'}; "
          f"charts: {', '.join(p.name for p in drawn)}; logs: {args.out / 'logs'}")
    if args.record:
        RECORDED.mkdir(exist_ok=True)
        for name in RECORD:
            if (args.out / name).exists():
                shutil.copy2(args.out / name, RECORDED / name)
        print(f"[soak] recorded in {RECORDED.relative_to(ROOT)}/")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
