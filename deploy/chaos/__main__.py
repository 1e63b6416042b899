"""`python -m deploy.chaos` (`make chaos`): one counted fault run; prints the table, writes
`<out>/result.json` and exits 0 only when it passed. `--small` is the size `make test` runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from deploy.chaos.processes import fresh_run_dir
from deploy.chaos.scenario import ALL_FAULTS, QUICK_TIMINGS, Options, execute
from deploy.chaos.tally import table
from deploy.local.stack import ROOT, StackError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.chaos", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "chaos",
                        help="run directory: logs/, result.json (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=2.0, help="leads per second (2)")
    parser.add_argument("--min-leads", type=int, default=100,
                        help="post at least this many leads (100)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds per fault (10)")
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between faults (8)")
    parser.add_argument("--faults", default=",".join(ALL_FAULTS),
                        help="comma-separated, in order (default: all)")
    parser.add_argument("--small", action="store_true",
                        help="a quick run: fewer leads, shorter faults")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        print(f"unknown faults: {sorted(unknown)}; known: {', '.join(ALL_FAULTS)}",
              file=sys.stderr)
        return 2
    opts = Options(out=args.out, rate=args.rate, min_leads=args.min_leads, hold=args.hold,
                   gap=args.gap, faults=faults)
    if args.small:
        opts.rate, opts.min_leads, opts.hold, opts.gap = 1.0, 10, 4.0, 3.0
        opts.timings = QUICK_TIMINGS
    fresh_run_dir(args.out)
    try:
        figures = asyncio.run(execute(opts))
    except (StackError, RuntimeError) as exc:
        print(f"[chaos] the run could not complete: {exc}", file=sys.stderr)
        return 1
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (args.out / "result.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures))
    print(f"[chaos] figures: {args.out / 'result.json'}; logs: {args.out / 'logs'}")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
