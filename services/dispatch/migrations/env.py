"""Alembic environment: async engine, optional schema (created if missing, used as search_path
and for the version table). Run through `nurture-dispatch migrate` (adapters/migrate.py)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
URL = config.attributes["url"]
SCHEMA = config.attributes.get("schema")


def _run(connection: Connection) -> None:
    if SCHEMA:
        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        connection.exec_driver_sql(f'SET search_path TO "{SCHEMA}"')
    context.configure(connection=connection, target_metadata=None, version_table_schema=SCHEMA)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(URL)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


asyncio.run(_main())
