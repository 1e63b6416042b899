"""Running dispatch's Alembic migrations programmatically (`nurture-dispatch migrate`,
`serve --migrate`, and the tests, each with its own schema)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str, schema: str | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = url
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(url: str, schema: str | None, revision: str = "head") -> None:
    """Bring the schema to `revision`. Blocking (runs its own event loop): call it from a thread
    when inside async code."""
    command.upgrade(alembic_config(url, schema), revision)
