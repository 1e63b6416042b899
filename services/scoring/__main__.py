"""`nurture-scoring` / `python -m services.scoring`."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = (
    "Nurture scoring: streaming lead scoring (faust-streaming): per-lead scores, decay, "
    "thresholds and explanations; nurture.events.v1 -> nurture.scored-events.v1."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nurture-scoring", description=DESCRIPTION)
    parser.parse_args(argv)
    print("nurture-scoring: not implemented yet (tracked in issue #3)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
