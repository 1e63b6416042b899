"""Alembic, run programmatically, for every service that owns tables (orchestrator, dispatch):
each has its own `migrations/` folder and PostgreSQL schema (created if missing, used as the
search_path and for the version table). A service's `migrations/env.py` is just:

    from services.common.db.migrations import run_env
    run_env()
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def upgrade(url: str, schema: str | None, migrations: Path, revision: str = "head") -> None:
    """Bring `schema` to `revision` with the scripts in `migrations`. Blocking (runs its own
    event loop): from async code, call it in a thread."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.attributes["url"] = url
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, revision)


def run_env() -> None:
    """The body of a service's Alembic env.py (online mode, async engine)."""
    url = context.config.attributes["url"]
    schema = context.config.attributes.get("schema")

    def run(connection: Connection) -> None:
        if schema:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            connection.exec_driver_sql(f'SET search_path TO "{schema}"')
        context.configure(connection=connection, target_metadata=None,
                          version_table_schema=schema)
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(run)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
