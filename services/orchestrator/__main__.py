"""`nurture-orchestrator` / `python -m services.orchestrator`: the command line (what is built
is built in `bootstrap.py`).

    nurture-orchestrator serve       API + scored-event consumer + timers + outbox relay
    nurture-orchestrator migrate     bring the database schema up to date (Alembic)
    nurture-orchestrator check       validate program files and the contact policy
    nurture-orchestrator simulate    dry-run programs over recorded events, no side effects
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.common.config.settings import (
    KafkaSettings,
    LogSettings,
    environment_help,
    load,
)
from services.common.errors import ConfigError


def environment() -> str:
    """The `--help` epilog: every setting with its default, from the settings classes."""
    from services.orchestrator.settings import OrchestratorSettings

    return environment_help("environment (serve, migrate)", OrchestratorSettings,
                            KafkaSettings, LogSettings)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nurture-orchestrator",
        description="Nurture orchestrator: lifecycle stages, nurture programs, durable timers "
                    "and the contact policy, with effectively-once state in PostgreSQL.",
        epilog=environment(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API, consumer, timers and outbox relay")
    serve.add_argument("--migrate", action="store_true", help="run migrations first")
    sub.add_parser("migrate", help="apply the database migrations")
    for name, text in (("check", "validate program files and the contact policy"),
                       ("simulate", "dry-run programs over recorded events")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--programs", action="append",
                         help="program file or directory; repeatable (default: config/programs)")
        cmd.add_argument("--policy", default="config/contact-policy.yaml",
                         help="contact policy file (%(default)s)")
        cmd.add_argument("--stage-model", default="b2b", help="(%(default)s)")
    simulate = sub.choices["simulate"]
    simulate.add_argument("--events", required=True,
                          help="JSON lines of scored events (or CloudEvents); - for stdin; "
                               "try samples/events.jsonl")
    simulate.add_argument("--models", action="append",
                          help="scoring model file or directory for plain CloudEvents, as "
                               "nurture-scoring uses them; repeatable (default: config/scoring)")
    simulate.add_argument("--no-scoring", action="store_true",
                          help="feed plain CloudEvents to the programs without scores")
    simulate.add_argument("--tail-days", type=float, default=90,
                          help="keep time running this long after the last event (%(default)s)")
    simulate.add_argument("--json", action="store_true", help="print the report as JSON")
    simulate.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def offline(args: argparse.Namespace) -> int:
    from services.common.config.files import ConfigFileError
    from services.orchestrator.bootstrap import build_decider

    try:
        decider = build_decider(args.programs or ["config/programs"], args.policy,
                                args.stage_model)
    except ConfigFileError as exc:
        print(exc, file=sys.stderr)
        return 1 if args.command == "check" else 2
    if args.command == "check":
        for program in decider.programs.values():
            print(f"ok: {program.id} v{program.version} ({program.trigger.kind} trigger, "
                  f"{len(program.steps)} steps, priority {program.priority})")
        return 0
    from services.orchestrator.entrypoints.simulate import simulate

    scoring = None if args.no_scoring else (args.models or ["config/scoring"])
    return simulate(decider, args.events, scoring=scoring, tail_days=args.tail_days,
                    as_json=args.json, quiet=args.quiet)


def online(args: argparse.Namespace) -> int:
    from services.common.config.files import ConfigFileError
    from services.common.observability.logging import configure_logging
    from services.orchestrator.bootstrap import build_decider
    from services.orchestrator.settings import OrchestratorSettings

    try:
        log_settings = load(LogSettings)
        kafka = load(KafkaSettings)
        settings = load(OrchestratorSettings)
        decider = None if args.command == "migrate" else build_decider(
            [p for p in settings.programs.split(",") if p], settings.policy, settings.stage_model)
        if args.command == "serve" and settings.api_token is None:
            raise ConfigError("invalid configuration:\n  NURTURE_ORCHESTRATOR_API_TOKEN: "
                              "required to serve the API")
    except (ConfigError, ConfigFileError) as exc:
        print(f"nurture-orchestrator: {exc}", file=sys.stderr)
        return 2
    configure_logging("orchestrator", level=log_settings.level, fmt=log_settings.format,
                      hash_key=log_settings.hash_key)
    from services.orchestrator.adapters.migrate import upgrade

    if args.command == "migrate" or args.migrate:
        upgrade(settings.database_url, settings.db_schema)
        if args.command == "migrate":
            return 0
    from services.common.http.server import run_server
    from services.orchestrator.bootstrap import bootstrap
    from services.orchestrator.entrypoints.http.app import create_app

    assert decider is not None
    run_server(create_app(bootstrap(settings, kafka, decider)), host=settings.host,
               port=settings.port,
               grace_seconds=settings.shutdown_grace_seconds)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command in ("check", "simulate"):
        return offline(args)
    return online(args)


if __name__ == "__main__":
    sys.exit(main())
