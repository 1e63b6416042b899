"""Structured logging. One JSON object per line (python-json-logger) with the service name, or a
readable text line for local development. Fields such as `event_id` and `lead_hash` go in
`extra=`; decision lines carry `lead_hash(lead_id)`, never the raw lead id; never log emails,
phone numbers or API keys."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import sys
import time
from collections.abc import Callable

from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


_hash_key: list[bytes] = []  # the process's NURTURE_LOG_HASH_KEY, set by configure_logging


def lead_hash(lead_id: str) -> str:
    """A stable stand-in for a lead id in log lines (16 hex digits): the same lead correlates
    across services and lines, and the id itself (often an email) is not logged. With a key
    (`NURTURE_LOG_HASH_KEY`, the same in every service) it is an HMAC-SHA256, which nobody
    without the key can recompute from a guessed email; without one, a plain SHA-256, which
    anyone holding the logs and a list of candidate emails can match."""
    if _hash_key:
        return hmac.new(_hash_key[0], lead_id.encode(), hashlib.sha256).hexdigest()[:16]
    return hashlib.sha256(lead_id.encode()).hexdigest()[:16]


def set_hash_key(key: str | None) -> None:
    """Key `lead_hash` with `key` (None or empty: the unkeyed SHA-256)."""
    _hash_key[:] = [key.encode()] if key else []


# a record's own attributes; the others are its `extra=` fields
_RECORD_FIELDS = {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime",
                  "service"}


class TextFormatter(logging.Formatter):
    """The readable line, ended by the record's `extra=` fields as one JSON object (the fields
    the JSON format carries), so a text log loses none of them."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        extra = {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}
        return f"{line} {json.dumps(extra, default=str)}" if extra else line


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
    that would bury everything else (found by the fault run, docs/reliability.md).

    If that message does not come again, the count is not lost: the first line of any logger
    after the window reports it ("repeated Kafka client message suppressed", with `repeated`
    the message and `repeats_suppressed` the count), and so does `flush()` (at exit)."""

    SUMMARY = "repeated Kafka client message suppressed"

    def __init__(self, window: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self._last: dict[tuple[str, object], float] = {}
        self._dropped: dict[tuple[str, object], tuple[int, int]] = {}  # (count, level)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_summary", False):
            return True
        now = self.clock()
        key = (record.name, record.msg)
        if self._dropped:  # counts of other messages whose window ended: reported now
            self._report(lambda k: k != key and now - self._last.get(k, now) >= self.window)
        if not record.name.startswith("aiokafka"):
            return True
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            count, level = self._dropped.get(key, (0, record.levelno))
            self._dropped[key] = (count + 1, max(level, record.levelno))
            return False
        if len(self._last) > 1000:  # messages are templates, so this stays small; a guard
            self.flush()
            self._last.clear()
        self._last[key] = now
        count, _ = self._dropped.pop(key, (0, 0))
        if count:
            record.repeats_suppressed = count
        return True

    def flush(self) -> None:
        """Report every count of dropped lines not reported yet."""
        self._report(lambda _: True)

    def _report(self, due: Callable[[tuple[str, object]], bool]) -> None:
        for key in [k for k in self._dropped if due(k)]:
            count, level = self._dropped.pop(key)
            logging.getLogger(key[0]).log(level, self.SUMMARY, extra={
                "repeat_summary": True, "repeated": str(key[1])[:200],
                "repeats_suppressed": count})


_repeats: list[RepeatFilter] = []  # the installed handler's filter


@atexit.register
def _flush_repeats() -> None:
    for repeats in _repeats:
        repeats.flush()


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "json",
                      hash_key: SecretStr | None = None) -> None:
    """Route every logger (ours, uvicorn's, aiokafka's) to stderr in one format; key
    `lead_hash` with `hash_key` (`NURTURE_LOG_HASH_KEY`) when there is one."""
    set_hash_key(hash_key.get_secret_value() if hash_key else None)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ServiceFilter(service))
    repeats = RepeatFilter()
    handler.addFilter(repeats)
    _repeats[:] = [repeats]  # flushed at exit
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(service)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # aiokafka is chatty about every reconnect attempt at INFO/ERROR; we log outages ourselves.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
