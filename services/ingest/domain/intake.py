"""Turning a request body into events ready for Kafka (pure: no I/O, `received_at` passed in).

All-or-nothing: a batch with any invalid event is rejected whole, with every problem listed as
`{index, path, message}` so the client can fix and resend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from schemas import validate_event
from schemas.bindings import (
    STRUCTURED,
    BindingError,
    DataNotJson,
    event_of_request,
    is_binary_request,
    media_type,
    record_headers,
)
from schemas.normalize import normalized
from schemas.vocabulary import LINKED_EVENT, NURTURE_ONLY_EVENTS, event_epoch, rfc3339
from services.ingest.domain.auth import ApiKey
from services.ingest.domain.identity import link_problems, links_of

CLOUDEVENT = STRUCTURED
CLOUDEVENT_BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
MAX_PROBLEMS = 100


@dataclass(frozen=True)
class FieldProblem:
    index: int
    path: str
    message: str


class Rejected(Exception):
    """The request cannot be accepted; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str, problems: Sequence[FieldProblem] = (), *,
                 retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.retry_after = retry_after  # the Retry-After header of a 429


@dataclass(frozen=True)
class Record:
    """One Kafka record: keyed by lead id, value is the structured-mode CloudEvent."""

    key: bytes | None
    value: bytes
    event_type: str
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str | None = None  # None: the events topic (a dead letter names its own)


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise Rejected(400, "empty request body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None


def events_from_body(body: bytes, content_type: str | None, *, max_events: int,
                     headers: Mapping[str, str] | None = None) -> list[Any]:
    """The raw events of a `POST /v1/events` body, by content type (single or batch); with
    `ce-*` `headers` (the HTTP binding's binary mode), the one event they and the body make."""
    if headers is not None and is_binary_request(headers):
        try:
            return [event_of_request(headers, body)]
        except BindingError as exc:
            raise Rejected(415 if isinstance(exc, DataNotJson) else 400, str(exc)) from None
    kind = media_type(content_type)
    if kind not in (CLOUDEVENT, CLOUDEVENT_BATCH, JSON):
        raise Rejected(415, f"unsupported content type '{kind or '(none)'}': use {CLOUDEVENT}, "
                            f"{CLOUDEVENT_BATCH} or {JSON}")
    doc = decode_json(body)
    if kind == CLOUDEVENT and not isinstance(doc, dict):
        raise Rejected(400, f"{CLOUDEVENT} carries one event: a JSON object")
    if kind == CLOUDEVENT_BATCH and not isinstance(doc, list):
        raise Rejected(400, f"{CLOUDEVENT_BATCH} carries a JSON array of events")
    if not isinstance(doc, list | dict):
        raise Rejected(400, "body must be a JSON object (one event) or array (a batch)")
    events = doc if isinstance(doc, list) else [doc]
    check_count(len(events), max_events)
    return events


def check_count(count: int, max_events: int) -> None:
    if count == 0:
        raise Rejected(400, "the batch is empty")
    if count > max_events:
        raise Rejected(413, f"too many events in one request: {count} > {max_events}")


def validate_all(events: Sequence[Any]) -> None:
    """Raise Rejected(422) listing every problem of every event, if there is any."""
    problems: list[FieldProblem] = []
    for index, event in enumerate(events):
        problems += [FieldProblem(index, p.path, p.message) for p in validate_event(event)]
    if problems:
        raise Rejected(422, f"{len({p.index for p in problems})} of {len(events)} events are "
                            "invalid; nothing was accepted", problems[:MAX_PROBLEMS])


def check_sources(events: Sequence[dict[str, Any]], key: ApiKey) -> None:
    allowed: set[tuple[str, str]] = set()  # a batch mostly repeats one source and a few types
    for index, event in enumerate(events):
        if (event["source"], event["type"]) in allowed:
            continue
        if not key.allows_source(event["source"]):
            raise Rejected(403, f"API key '{key.name}' may not send events with source "
                                f"'{event['source']}' (event {index})")
        if event["type"] in NURTURE_ONLY_EVENTS:
            raise Rejected(403, f"events of type '{event['type']}' are published by Nurture "
                                f"itself; no API key may send them (event {index})")
        if not key.allows_type(event["type"]):
            raise Rejected(403, f"API key '{key.name}' may not send events of type "
                                f"'{event['type']}' (event {index})")
        allowed.add((event["source"], event["type"]))


def check_times(events: Sequence[dict[str, Any]], received_at: datetime,
                max_future_seconds: int) -> None:
    """A `time` ahead of receipt (beyond clock skew) or outside 2000-2099 is refused: a wrong
    client clock would otherwise push a lead's score clock into the future."""
    problems = []
    latest = received_at.timestamp() + max_future_seconds
    for index, event in enumerate(events):
        if "time" not in event:
            continue
        try:
            when = event_epoch(event["time"])
        except ValueError as exc:
            problems.append(FieldProblem(index, "time", str(exc).replace("'time' ", "")))
            continue
        if when > latest:
            problems.append(FieldProblem(index, "time", "is in the future (check the clock)"))
    if problems:
        raise Rejected(422, f"{len(problems)} of {len(events)} events have an unusable time; "
                            "nothing was accepted", problems)


def to_record(event: dict[str, Any], *, received_at: datetime) -> Record:
    """Normalize a valid event (event time defaults to receipt; `schemas.normalize`) and encode
    it for Kafka."""
    event = normalized(event)
    if "time" not in event:
        event = {**event, "time": rfc3339(received_at.timestamp())}
    return Record(
        key=str(event["subject"]).encode(),
        value=orjson.dumps(event),
        event_type=str(event["type"]),
        headers=[(name, text.encode()) for name, text in record_headers(str(event["type"]))],
    )


def accept(events: Sequence[Any], *, key: ApiKey, received_at: datetime,
           max_future_seconds: int = 300, max_event_bytes: int = 256 * 1024) -> list[Record]:
    """Validate all, check the key may send them, and return the records to publish: each
    event's, and the identity links they imply (`identity.links_of`), behind them."""
    validate_all(events)
    if problems := link_problems(events, browser=key.browser):
        raise Rejected(422, f"{len(problems)} of {len(events)} events make links that cannot be "
                            "made; nothing was accepted", [FieldProblem(*p) for p in problems])
    check_times(events, received_at, max_future_seconds)
    check_sources(events, key)
    records = [to_record(e, received_at=received_at) for e in events]
    if key.allows_type(LINKED_EVENT):  # the links the events imply, if the key may link
        records += [to_record(link, received_at=received_at)
                    for e in events for link in links_of(e)]
    for index, record in enumerate(records):
        if len(record.value) > max_event_bytes:
            raise Rejected(413, f"event {index} is {len(record.value)} bytes encoded; "
                                f"the limit is {max_event_bytes}")
    return records
