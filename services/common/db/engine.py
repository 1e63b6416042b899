"""The PostgreSQL engine of the services that own tables (orchestrator, dispatch): asyncpg under
SQLAlchemy, a pool of connections pinned to the service's schema, and JSON columns encoded and
decoded by orjson (the stdlib's `json` was about 5% of the orchestrator's CPU per event)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str, *, schema: str, pool_size: int = 10) -> AsyncEngine:
    """Connections check they are alive when taken from the pool (a restarted database costs
    no failed transaction)."""
    return create_async_engine(
        url, pool_size=pool_size, pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": schema}},
        json_serializer=json_text, json_deserializer=orjson.loads)


def json_text(value: Any) -> str:
    """JSON as the stdlib writes it for our documents: keys that are not strings become strings
    (orjson refuses them by default)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
