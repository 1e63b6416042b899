"""Structured logging. One JSON object per line (python-json-logger) with the service name, or a
readable text line for local development. Fields such as `event_id` and `lead_hash` go in
`extra=`; decision lines carry `lead_hash(lead_id)`, never the raw lead id; never log emails,
phone numbers or API keys."""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def lead_hash(lead_id: str) -> str:
    """A stable stand-in for a lead id in log lines (16 hex digits of its SHA-256): the same lead
    correlates across services and lines, and the id itself (often an email) is not logged."""
    return hashlib.sha256(lead_id.encode()).hexdigest()[:16]


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


class RepeatFilter(logging.Filter):
    """Lets one line per `window` seconds through for each message of the Kafka client
    (`aiokafka*` loggers); the next one let through says how many were dropped
    (`repeats_suppressed`). While the broker is down, aiokafka 0.14's producer retries its
    metadata request without a pause and logs two errors each time: thousands of lines a second
    that would bury everything else (found by the fault run, docs/reliability.md)."""

    def __init__(self, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self._last: dict[tuple[str, object], float] = {}
        self._dropped: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        key, now = (record.name, record.msg), self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # messages are templates, so this stays small; a guard
            self._last.clear()
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.repeats_suppressed = dropped
        return True


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, uvicorn's, aiokafka's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ServiceFilter(service))
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(service)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # aiokafka is chatty about every reconnect attempt at INFO/ERROR; we log outages ourselves.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
