"""`nurture-dispatch` / `python -m services.dispatch`."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = (
    "Nurture dispatch: delivers email, SMS, CRM tasks and webhooks exactly once, with "
    "templates, tracking and feedback events."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nurture-dispatch", description=DESCRIPTION)
    parser.parse_args(argv)
    print("nurture-dispatch: not implemented yet (tracked in issue #5)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
