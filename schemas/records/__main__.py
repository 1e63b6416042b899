"""`python -m schemas.records [--write]`: check (or rewrite) the committed JSON Schema files of the
record models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schemas.records import RECORDS
from schemas.records.documents import committed, file_stem, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.records",
        description="Check that schemas/records/*.schema.json match the record models; --write "
        "rewrites them.")
    parser.add_argument("--write", action="store_true", help="rewrite the files from the models")
    args = parser.parse_args(argv)
    folder = Path(__file__).parent
    stale = [model for model in RECORDS if committed(model) != render(model)]
    for model in stale:
        path = folder / f"{file_stem(model)}.schema.json"
        if args.write:
            path.write_text(render(model), encoding="utf-8")
            print(f"wrote {path}")
        else:
            print(f"{path} is out of date; run python -m schemas.records --write", file=sys.stderr)
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
