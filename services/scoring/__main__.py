"""`nurture-scoring` / `python -m services.scoring`: the command line of the scoring service
(the worker is built by `bootstrap.py` and run by `entrypoints/worker.py`).

    nurture-scoring worker                 run the streaming scorer (faust worker)
    nurture-scoring check [MODEL ...]      validate model files, report every problem
    nurture-scoring backtest --events E.jsonl   replay recorded events, no Kafka
    nurture-scoring score --events E.jsonl      what the worker would publish for them, no Kafka
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.common.config.settings import (
    ClockSettings,
    KafkaSettings,
    LogSettings,
    environment_help,
    load,
)
from services.common.errors import ConfigError
from services.scoring.settings import ScoringSettings


def environment() -> str:
    """The `--help` epilog: every setting with its default, from the settings classes."""
    from services.scoring.settings import ScoringSettings

    return environment_help("environment (worker)", ScoringSettings, KafkaSettings, LogSettings,
                            ClockSettings)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nurture-scoring",
        description="Nurture scoring: streaming lead scoring (faust-streaming). Consumes "
                    "nurture.events.v1, produces nurture.scored-events.v1 with each lead's "
                    "score snapshot: fit, decayed engagement, thresholds crossed, breakdown.",
        epilog=environment(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the streaming scorer")
    check = sub.add_parser("check", help="validate scoring model files")
    check.add_argument("models", nargs="*", help="files or directories (NURTURE_SCORING_MODELS)")
    backtest = sub.add_parser(
        "backtest", help="replay recorded events (JSON lines) through models, without Kafka")
    backtest.add_argument("--model", action="append", dest="models",
                          help="model file or directory; repeatable (default: config/scoring)")
    backtest.add_argument("--events", required=True,
                          help="JSON-lines file of CloudEvents (or scored events); - for stdin; "
                               "try samples/events.jsonl")
    backtest.add_argument("--json", action="store_true", help="print the report as JSON")
    backtest.add_argument("--quiet", action="store_true", help="no progress on stderr")
    score = sub.add_parser(
        "score", help="score recorded events as the worker does, without Kafka: one scored-event "
                      "(or dead-letter) record per line on stdout")
    score.add_argument("--model", action="append", dest="models",
                       help="model file or directory; repeatable (default: config/scoring)")
    score.add_argument("--events", required=True,
                       help="JSON-lines file of CloudEvents; - for stdin")
    score.add_argument("--line-buffered", action="store_true",
                       help="write each output line as soon as its input line is scored (for a "
                            "program that feeds events one at a time and reads each answer)")
    return parser.parse_args(argv)


def model_paths(models: str) -> list[str]:
    return [p.strip() for p in models.split(",") if p.strip()]


def check(paths: list[str]) -> int:
    from services.scoring.adapters.model_files import ModelFileError, load_models

    try:
        models = load_models(paths)
    except ModelFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    for model in models:
        print(f"ok: {model.id} v{model.version}: {len(model.fit)} fit rules, "
              f"{len(model.engagement)} engagement rules, thresholds "
              + ", ".join(f"{k}={v:g}" for k, v in model.thresholds.items()))
    return 0


def worker() -> int:
    from services.common.observability.logging import configure_logging
    from services.scoring.adapters.model_files import ModelFileError, load_models

    try:
        log_settings = load(LogSettings)
        kafka = load(KafkaSettings)
        settings = load(ScoringSettings)
        clock = load(ClockSettings)
        models = load_models(model_paths(settings.models))
    except (ConfigError, ModelFileError) as exc:
        print(f"nurture-scoring: {exc}", file=sys.stderr)
        return 2
    configure_logging("scoring", level=log_settings.level, fmt=log_settings.format,
                      hash_key=log_settings.hash_key)
    from services.scoring.entrypoints.worker import run_worker

    return run_worker(settings, kafka, models, log_level=log_settings.level, clock=clock)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "check":
        if args.models:
            return check(args.models)
        try:
            return check(model_paths(load(ScoringSettings).models))
        except ConfigError as exc:
            print(f"nurture-scoring: {exc}", file=sys.stderr)
            return 2
    if args.command == "score":
        from services.scoring.entrypoints.score import run_score

        return run_score(args.models or ["config/scoring"], args.events,
                         line_buffered=args.line_buffered)
    if args.command == "backtest":
        from services.scoring.entrypoints.backtest import run_backtest

        return run_backtest(args.models or ["config/scoring"], args.events, as_json=args.json,
                            quiet=args.quiet)
    return worker()


if __name__ == "__main__":
    sys.exit(main())
