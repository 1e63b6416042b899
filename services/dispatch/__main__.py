"""`nurture-dispatch` / `python -m services.dispatch`: the command line. It parses the
arguments, loads the settings (failing fast, naming the variable) and runs: bootstrap.py builds
the service, entrypoints/ drive it.

    nurture-dispatch serve      consume dispatch commands and deliver them (+ /metrics, /readyz)
    nurture-dispatch migrate    bring dispatch's database schema up to date (Alembic)
    nurture-dispatch check      templates parse, and every template programs use exists
    nurture-dispatch preview    a template rendered for a lead's profile, nothing sent
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from services.common.config.settings import (
    ClockSettings,
    KafkaSettings,
    LogSettings,
    environment_help,
    load,
)
from services.common.errors import ConfigError

DESCRIPTION = (
    "Nurture dispatch: delivers email, SMS, CRM tasks and webhooks exactly once, with "
    "templates, tracking and feedback events."
)
def environment() -> str:
    """The `--help` epilog: every setting with its default, from the settings classes."""
    from services.common.tracking import TrackingSettings
    from services.dispatch.settings import DispatchSettings

    return environment_help("environment (serve, migrate)", DispatchSettings, TrackingSettings,
                            KafkaSettings, LogSettings, ClockSettings)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nurture-dispatch", description=DESCRIPTION,
                                     epilog=environment(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="consume dispatch commands and deliver them")
    serve.add_argument("--migrate", action="store_true", help="run migrations first")
    sub.add_parser("migrate", help="apply the database migrations")
    check = sub.add_parser("check", help="check templates against the program files")
    check.add_argument("--templates", default="config/templates", help="(%(default)s)")
    check.add_argument("--programs", action="append",
                       help="program file or directory; repeatable (default: config/programs)")
    from services.dispatch.entrypoints import preview

    preview.add_arguments(sub.add_parser(
        "preview", help="render a template for a lead's profile, sending nothing",
        description=preview.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser.parse_args(argv)


def online(args: argparse.Namespace) -> int:
    from services.common.clock import clock_of
    from services.common.observability.logging import configure_logging
    from services.common.tracking import TrackingSettings
    from services.dispatch.settings import DispatchSettings

    try:
        log_settings = load(LogSettings)
        kafka = load(KafkaSettings)
        settings = load(DispatchSettings)
        tracking = load(TrackingSettings)
        clock = clock_of(load(ClockSettings))
        if args.command == "serve" and not Path(settings.templates).is_dir():
            raise ConfigError("invalid configuration:\n  NURTURE_DISPATCH_TEMPLATES: no "
                              f"directory {settings.templates!r}")
    except ConfigError as exc:
        print(f"nurture-dispatch: {exc}", file=sys.stderr)
        return 2
    configure_logging("dispatch", level=log_settings.level, fmt=log_settings.format,
                      hash_key=log_settings.hash_key)
    from services.dispatch.adapters.migrate import upgrade

    if args.command == "migrate" or args.migrate:
        upgrade(settings.database_url, settings.db_schema)
        if args.command == "migrate":
            return 0
    from services.common.http.server import run_server
    from services.dispatch.bootstrap import bootstrap
    from services.dispatch.entrypoints.http.app import create_app

    app = create_app(bootstrap(settings, kafka, tracking, clock=clock))
    run_server(app, host=settings.host, port=settings.port,
               grace_seconds=settings.shutdown_grace_seconds)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "check":
        from services.dispatch.entrypoints.check import run_check

        return run_check(args)
    if args.command == "preview":
        from services.dispatch.entrypoints.preview import run_preview

        return run_preview(args)
    return online(args)


if __name__ == "__main__":
    sys.exit(main())
