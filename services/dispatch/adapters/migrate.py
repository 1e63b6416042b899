"""The dispatch's migrations, run programmatically (`nurture-dispatch migrate`, `make run`, the
Kubernetes migration job, and the tests, each with its own schema)."""

from __future__ import annotations

from pathlib import Path

from services.common.db import migrations

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def upgrade(url: str, schema: str | None, revision: str = "head") -> None:
    """Bring `schema` to `revision`. Blocking: from async code, call it in a thread."""
    migrations.upgrade(url, schema, MIGRATIONS, revision)
