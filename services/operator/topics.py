"""`nurture-topics`: create Nurture's Kafka topics (idempotent), from the topic map."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from services.common.cli import ends_quietly
from services.common.config.settings import KafkaSettings, LogSettings, load
from services.common.errors import ConfigError
from services.common.kafka.topics import ensure_topics
from services.common.observability.logging import configure_logging

log = logging.getLogger(__name__)


@ends_quietly
def main(argv: Sequence[str] | None = None, prog: str = "nurture-topics") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create Nurture's Kafka topics (idempotent). Reads KAFKA_BOOTSTRAP_SERVERS, "
        "NURTURE_TOPIC_PREFIX and the KAFKA_SASL_*/KAFKA_SECURITY_PROTOCOL settings.",
    )
    parser.add_argument("--partitions", type=int, default=6,
                        help="partitions per topic (%(default)s)")
    parser.add_argument("--replication-factor", type=int, default=1, help="(%(default)s)")
    args = parser.parse_args(argv)
    try:
        log_settings = load(LogSettings)
        kafka = load(KafkaSettings)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    configure_logging("topics", level=log_settings.level, fmt=log_settings.format,
                      hash_key=log_settings.hash_key)
    created = asyncio.run(ensure_topics(
        kafka, partitions=args.partitions, replication_factor=args.replication_factor))
    log.info("topics ready",
             extra={"topics_created": created, "bootstrap": kafka.bootstrap_servers})
    return 0


if __name__ == "__main__":
    sys.exit(main())
