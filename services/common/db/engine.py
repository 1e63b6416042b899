"""The PostgreSQL engine of the services that own tables (orchestrator, dispatch): asyncpg under
SQLAlchemy, a pool of connections pinned to the service's schema, and JSON columns encoded and
decoded by orjson (the stdlib's `json` was about 5% of the orchestrator's CPU per event).

A pooled connection is checked for life only when it sat idle for `ping_after` seconds (or
more) before being taken (`IdlePing`). SQLAlchemy's `pool_pre_ping` checks it at every
checkout, and its asyncpg dialect pings inside a transaction of its own (BEGIN, `;`,
ROLLBACK): three round trips added to every unit of work, which were most of a short
transaction's round trips (dispatch's status writes, the outbox relays). A database restarted
while the service was idle still costs no failed transaction; one restarted in the middle of
traffic fails the transactions using its connections at that moment, as with any check, and
the first of them invalidates the whole pool, so the next transaction runs on a new
connection (tests/common/integration/test_engine_ping.py)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

PING_AFTER_SECONDS = 1.0
_RETURNED = "nurture_returned_at"  # the pool entry's `info` key: when it was last checked in


def make_engine(url: str, *, schema: str, pool_size: int = 10,
                ping_after: float = PING_AFTER_SECONDS) -> AsyncEngine:
    """The pool hands out its most recently used connection first (`pool_use_lifo`): under
    load the same few connections stay busy and are never pinged; the others wait idle and
    are checked when next taken."""
    engine = create_async_engine(
        url, pool_size=pool_size, pool_use_lifo=True,
        connect_args={"server_settings": {"search_path": schema}},
        json_serializer=json_text, json_deserializer=orjson.loads)
    IdlePing(ping_after).listen(engine)
    return engine


class IdlePing:
    """Pool listeners: a connection idle for `after` seconds is pinged when taken; a dead one
    makes the pool discard it and take or open another (`DisconnectionError`)."""

    def __init__(self, after: float) -> None:
        self.after = after

    def listen(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine.pool, "checkin", self.checkin)
        event.listen(engine.sync_engine.pool, "checkout", self.checkout)

    @staticmethod
    def checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED] = time.monotonic()

    def checkout(self, dbapi_connection: Any, record: ConnectionPoolEntry,
                 proxy: PoolProxiedConnection) -> None:
        returned = record.info.get(_RETURNED)
        if returned is None or time.monotonic() - returned < self.after:
            return  # just opened, or in use a moment ago
        try:
            dbapi_connection.ping()  # within the pool's checkout, as pool_pre_ping does
        except Exception as error:  # the server closed it: the pool opens another
            raise exc.DisconnectionError(f"an idle connection was dead: {error}") from error


def json_text(value: Any) -> str:
    """JSON as the stdlib writes it for our documents: keys that are not strings become strings
    (orjson refuses them by default)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
