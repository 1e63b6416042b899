"""`python -m bench [--quick] [--only ingest,scoring,...] [--out bench/results.json]`: run the
side-by-side benchmarks and write the results file (then `python -m bench.report` renders the
table in docs/benchmarks.md). Every figure is a ratio against a baseline measured in the same run,
with both absolute numbers; nothing here asserts a timing."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bench import backtest, dispatch, e2e, ingest, orchestrator, scoring
from bench.core import ROOT, Sizes, Stopwatch, machine
from bench.infra import Infra, infrastructure

Bench = Callable[[Infra, Sizes], Awaitable[dict[str, Any]]]
COMPONENTS: dict[str, Bench] = {
    "ingest": ingest.run, "scoring": scoring.run, "backtest": backtest.run,
    "orchestrator": orchestrator.run, "dispatch": dispatch.run, "e2e": e2e.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds per bench)")
    parser.add_argument("--only", default=",".join(COMPONENTS),
                        help=f"comma-separated subset of {','.join(COMPONENTS)}")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--label", default="current",
                        help="name of this run in the results file (e.g. before / after)")
    parser.add_argument("--workdir", help="keep the servers' logs and state here (default: a "
                                          "temporary directory, deleted)")
    return parser.parse_args(argv)


async def run_all(names: list[str], sizes: Sizes, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with infrastructure(workdir) as infra:
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            clock = Stopwatch()
            try:
                results[name] = await COMPONENTS[name](infra, sizes)
            except Exception as exc:  # one broken bench is recorded, the others still run
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "comparisons": []}
            results[name]["seconds"] = round(clock(), 1)
            print(f"bench: {name} done in {results[name]['seconds']} s", file=sys.stderr)
    return results


def merge(path: Path, label: str, run: dict[str, Any]) -> dict[str, Any]:
    """The results file with this run under `runs[label]` (other labels kept, e.g. `before`)."""
    doc: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {}
    runs = doc.get("runs", {})
    previous = runs.get(label, {})
    components = {**previous.get("components", {}), **run["components"]}
    runs[label] = {**run, "components": components}
    return {"format": 1, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(COMPONENTS)
    if unknown:
        print(f"unknown component(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    # "topic not found" while waiting for a worker to create its output topics
    logging.getLogger("aiokafka.cluster").setLevel(logging.CRITICAL)
    sizes = Sizes.of(args.quick)
    info = machine()
    if args.workdir:
        components = asyncio.run(run_all(names, sizes, Path(args.workdir)))
    else:
        with tempfile.TemporaryDirectory(prefix="nurture-bench-") as tmp:
            components = asyncio.run(run_all(names, sizes, Path(tmp)))
    for comp in components.values():
        comp["commit"], comp["date"] = info["commit"], info["date"]
    run = {"machine": info, "quick": args.quick, "components": components}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(merge(out, args.label, run),
                                 option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"bench: results written to {out}", file=sys.stderr)
    failed = [n for n, r in components.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
