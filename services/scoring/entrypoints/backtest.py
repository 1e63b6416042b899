"""`nurture-scoring backtest`: read recorded events (JSON lines), replay them through the models
(services/scoring/domain/backtest.py) and print the report. Lines that are not events are
counted and the first few reported with their line numbers; they never stop the run."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import IO, Any

import orjson

from services.common.cli import ends_quietly, open_input
from services.scoring.domain.backtest import Replay
from services.scoring.service_layer.handlers import BadEvent, check_event, event_time

PROGRESS_EVERY_SECONDS = 5.0
SHOWN_BAD_LINES = 5


def _events(stream: IO[bytes], bad: list[str]) -> Iterator[tuple[dict[str, Any], float]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            if isinstance(doc, dict) and isinstance(doc.get("event"), dict) and "score" in doc:
                doc = doc["event"]  # a record of nurture.scored-events.v1
            event = check_event(doc)
            yield event, event_time(event, 0)
        except (orjson.JSONDecodeError, BadEvent) as exc:
            bad.append(f"line {number}: {exc}")


@ends_quietly
def run_backtest(model_paths: list[str], events_path: str, *, as_json: bool,
                 quiet: bool) -> int:
    from services.scoring.adapters.model_files import load_or_report

    models = load_or_report(model_paths)
    stream = open_input(events_path, "nurture-scoring backtest") if models is not None else None
    if models is None or stream is None:
        return 2
    bad: list[str] = []
    run = Replay(models)
    started = last_note = time.perf_counter()
    with stream:
        for event, t in _events(stream, bad):
            run.feed(event, t)
            if not quiet and run.events % 10_000 == 0:
                now = time.perf_counter()
                if now - last_note >= PROGRESS_EVERY_SECONDS:
                    last_note = now
                    print(f"... {run.events:,} events, {len(run.leads):,} leads, "
                          f"{run.events / (now - started):,.0f} events/s", file=sys.stderr)
    elapsed = time.perf_counter() - started
    report = run.report() | {"bad_lines": len(bad), "seconds": round(elapsed, 3),
                             "events_per_second": round(run.events / elapsed) if elapsed else None}
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(report, bad))
    return 0


def render(report: dict[str, Any], bad: list[str]) -> str:
    lines = [
        f"Replayed {report['events']:,} events of {report['leads']:,} leads "
        f"({report['from']} .. {report['to']}) in {report['seconds']}s "
        f"= {report['events_per_second'] or 0:,} events/s",
        f"duplicates skipped: {report['duplicates']:,}   late (no engagement): "
        f"{report['late']:,}   unreadable lines: {report['bad_lines']:,}",
    ]
    lines += [f"  {b}" for b in bad[:SHOWN_BAD_LINES]]
    for model in report["models"]:
        d = model["distribution"]
        lines += ["", f"== model {model['model']} v{model['version']}",
                  "score (last per lead): " + "  ".join(f"{k} {v}" for k, v in d.items()),
                  "leads by band: " + "  ".join(f"{k}: {v:,}" for k, v in model["bands"].items()),
                  "", f"{'threshold':<12}{'score':>7}{'leads up':>10}{'ups':>7}{'downs':>7}"
                  f"{'median days to 1st':>20}"]
        for t in model["thresholds"]:
            median = t["median_days_to_first_crossing"]
            lines.append(f"{t['threshold']:<12}{t['score']:>7g}{t['leads_crossed_up']:>10,}"
                         f"{t['crossings_up']:>7,}{t['crossings_down']:>7,}"
                         f"{'-' if median is None else median:>20}")
            if t["by_week"]:
                lines.append("    up per week: " + ", ".join(
                    f"{w} {n}" for w, n in t["by_week"].items()))
        lines += ["", f"{'top rules (points in current scores)':<40}{'points':>12}{'leads':>9}"]
        lines += [f"{r['rule']:<40}{r['points']:>12,.2f}{r['leads']:>9,}"
                  for r in model["top_rules"]]
    return "\n".join(lines)
