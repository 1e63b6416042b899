"""`nurture-ops` / `python -m services.operator`: the operator's commands, for day 2.

    nurture-ops topics    create Nurture's Kafka topics (idempotent)
    nurture-ops dlq       list dead letters and replay them after a fix
    nurture-ops tail      read a topic, decoded through its contract and filtered
    nurture-ops explain   why a lead is where it is: stage history, scores, programs, messages

`nurture-ops COMMAND --help` says more. Every command reads Kafka's settings from the
environment (KAFKA_BOOTSTRAP_SERVERS, KAFKA_*, NURTURE_TOPIC_PREFIX). `nurture-topics` and
`nurture-dlq` are the same commands under their older names."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from services.operator import dlq, explain, tail, topics

COMMANDS: dict[str, Callable[[Sequence[str], str], int]] = {
    "topics": topics.main, "dlq": dlq.main, "tail": tail.main, "explain": explain.main}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nurture-ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    parser.add_argument("arguments", nargs=argparse.REMAINDER,
                        help="the command's own arguments (COMMAND --help)")
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args.arguments, f"nurture-ops {args.command}")


if __name__ == "__main__":
    sys.exit(main())
