"""`nurture-ingest` / `python -m services.ingest`: the composition root of the ingest service."""

from __future__ import annotations

import argparse
import json
import sys

from services.common.config.settings import (
    ClockSettings,
    KafkaSettings,
    LogSettings,
    environment_help,
    load,
)
from services.common.errors import ConfigError
from services.common.observability.logging import configure_logging
from services.common.tracking import TrackingSettings
from services.ingest.domain.auth import generate_key, hash_key
from services.ingest.settings import IngestSettings


def environment() -> str:
    """The `--help` epilog: every setting with its default, from the settings classes."""
    from services.common.tracking import TrackingSettings
    from services.ingest.settings import IngestSettings

    return environment_help("environment", IngestSettings, TrackingSettings, KafkaSettings,
                            LogSettings, ClockSettings)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nurture-ingest",
        description="Nurture ingest: authenticated HTTP intake of CloudEvents and Segment-style "
                    "batches into Kafka (nurture.events.v1).",
        epilog=environment(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the HTTP server (the default)")
    serve.add_argument("--host", help="override NURTURE_INGEST_HOST")
    serve.add_argument("--port", type=int, help="override NURTURE_INGEST_PORT")
    keygen = sub.add_parser("keygen", help="create an API key and print its config entry")
    keygen.add_argument("--name", required=True, help="a name for the key, e.g. website")
    keygen.add_argument("--source", action="append", dest="sources", metavar="PATTERN",
                        help="allowed CloudEvents source (glob); repeatable; default: any")
    keygen.add_argument("--type", action="append", dest="types", metavar="PATTERN",
                        help="allowed event type (glob, e.g. 'web.*'); repeatable; default: any")
    return parser.parse_args(argv)


def keygen(name: str, sources: list[str] | None, types: list[str] | None) -> int:
    key = generate_key()
    entry = {"name": name, "sha256": hash_key(key), "sources": sources or ["*"],
             "types": types or ["*"]}
    print(f"API key (give it to the sender, it is not stored): {key}")
    print(f"Config entry for NURTURE_INGEST_API_KEYS: {json.dumps([entry])}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from services.common.clock import clock_of
    from services.common.http.server import run_server
    from services.ingest.bootstrap import bootstrap
    from services.ingest.entrypoints.http.app import create_app

    try:
        log_settings = load(LogSettings)
        settings = load(IngestSettings)
        kafka = load(KafkaSettings)
        tracking = load(TrackingSettings)
        clock = clock_of(load(ClockSettings))
    except ConfigError as exc:
        print(f"nurture-ingest: {exc}", file=sys.stderr)
        return 2
    configure_logging("ingest", level=log_settings.level, fmt=log_settings.format,
                      hash_key=log_settings.hash_key)
    app = create_app(bootstrap(settings, kafka, tracking_keys=tracking.keys(), clock=clock))
    run_server(app, host=args.host or settings.host, port=args.port or settings.port,
               grace_seconds=settings.shutdown_grace_seconds, proxy_headers=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "keygen":
        return keygen(args.name, args.sources, args.types)
    if args.command is None:
        args.host = args.port = None
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
