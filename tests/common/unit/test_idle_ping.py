"""`IdlePing` (services/common/db/engine.py) decides at checkout whether a pooled connection is
checked: never one just opened or returned a moment ago, always one idle for `after` seconds,
and a dead one is refused so the pool opens another."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import exc

from services.common.db.engine import IdlePing


class Connection:
    """A DBAPI connection whose ping succeeds or fails, counting the pings."""

    def __init__(self, alive: bool) -> None:
        self.alive, self.pings = alive, 0

    def ping(self) -> None:
        self.pings += 1
        if not self.alive:
            raise OSError("connection reset by peer")


class Entry:
    def __init__(self) -> None:
        self.info: dict[str, Any] = {}


def returned(entry: Entry, seconds_ago: float, check: IdlePing) -> None:
    check.checkin(None, entry)  # type: ignore[arg-type]
    entry.info = {k: v - seconds_ago for k, v in entry.info.items()}


def checkout(check: IdlePing, conn: Connection, entry: Entry) -> None:
    check.checkout(conn, entry, None)  # type: ignore[arg-type]


def test_a_new_connection_and_one_returned_a_moment_ago_are_not_pinged() -> None:
    check, entry, conn = IdlePing(after=1.0), Entry(), Connection(alive=False)
    checkout(check, conn, entry)  # just opened
    returned(entry, 0.5, check)
    checkout(check, conn, entry)
    assert conn.pings == 0


def test_a_connection_idle_long_enough_is_pinged_and_kept_when_alive() -> None:
    check, entry, conn = IdlePing(after=1.0), Entry(), Connection(alive=True)
    returned(entry, 1.5, check)
    checkout(check, conn, entry)
    assert conn.pings == 1


def test_a_dead_idle_connection_is_refused_for_the_pool_to_replace() -> None:
    check, entry, conn = IdlePing(after=1.0), Entry(), Connection(alive=False)
    returned(entry, 30.0, check)
    with pytest.raises(exc.DisconnectionError, match="connection reset"):
        checkout(check, conn, entry)


def test_checkin_records_when_the_connection_came_back() -> None:
    check, entry = IdlePing(after=1.0), Entry()
    before = time.monotonic()
    check.checkin(None, entry)  # type: ignore[arg-type]
    assert before <= max(entry.info.values()) <= time.monotonic()
