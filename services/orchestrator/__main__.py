"""`nurture-orchestrator` / `python -m services.orchestrator`."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = (
    "Nurture orchestrator: lifecycle stages, nurture programs, durable timers and the contact "
    "policy, with effectively-once state in PostgreSQL."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nurture-orchestrator", description=DESCRIPTION)
    parser.parse_args(argv)
    print("nurture-orchestrator: not implemented yet (tracked in issue #4)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
