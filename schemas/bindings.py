"""How a CloudEvent rides on a Kafka record or an HTTP request: the CloudEvents protocol
bindings (Kafka protocol binding, HTTP protocol binding), both content modes.

- **What Nurture writes** is structured mode: the value is the event as JSON
  (`application/cloudevents+json`), and no `ce_*` header, so that the official SDKs read it as a
  structured event. The event type rides along in a header of our own (`TYPE_HEADER`), so that a
  consumer can skip the events it does not want without parsing them.
- **What Nurture reads** is either mode: a record or request with `ce_` (Kafka) or `ce-` (HTTP)
  attribute headers and no structured content type is a binary-mode event, its data the value or
  body. Records written before `TYPE_HEADER` existed carry a `ce_type` header next to a
  structured value; their content type says they are structured, and they read as such.

Every producer and consumer of events goes through here (ingest, scoring, dispatch, the
orchestrator's outbox)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import orjson

STRUCTURED = "application/cloudevents+json"
RECORD_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TYPE_HEADER = "nurture-event-type"
LEGACY_TYPE_HEADER = "ce_type"  # on records written before TYPE_HEADER (structured values)
KAFKA_PREFIX = "ce_"
HTTP_PREFIX = "ce-"


class BindingError(ValueError):
    """A message that is no CloudEvent in either mode; the text says why."""


class DataNotJson(BindingError):
    """A binary-mode event whose content type is not JSON (our events' data are JSON objects)."""


def record_headers(event_type: str) -> list[tuple[str, str]]:
    """The headers of a structured-mode event record of `event_type`, as text (as an outbox
    stores them; a producer sends each value UTF-8 encoded)."""
    return [("content-type", RECORD_CONTENT_TYPE), (TYPE_HEADER, event_type)]


def media_type(content_type: str | None) -> str:
    """`content_type` without parameters, lower case ('' for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


Headers = Iterable[tuple[str, bytes | None]] | None
"""A Kafka record's headers as clients give them (a header's value may be null)."""


def _named(headers: Headers) -> dict[str, bytes]:
    """Header name (lower case) → value (a null value read as empty)."""
    return {name.lower(): raw or b"" for name, raw in headers or ()}


def record_type(headers: Headers) -> str | None:
    """The event type a record's headers name (ours, else a binary or older record's
    `ce_type`), without reading its value; None when they name none."""
    named = _named(headers)
    raw = named.get(TYPE_HEADER, named.get(LEGACY_TYPE_HEADER))
    return raw.decode(errors="replace") if raw is not None else None


def is_binary_record(headers: Headers) -> bool:
    """Whether a Kafka record is a binary-mode event: a `ce_specversion` header, and no
    structured content type (our older records have a `ce_type` header beside a structured
    value)."""
    named = _named(headers)
    content_type = named.get("content-type", b"").decode(errors="replace")
    return f"{KAFKA_PREFIX}specversion" in named and not _structured(content_type)


def _structured(content_type: str | None) -> bool:
    """Whether a content type is a CloudEvents event format (structured mode)."""
    return media_type(content_type).startswith("application/cloudevents")


def event_of_record(headers: Headers, value: bytes | None) -> Any:
    """The event of a Kafka record in either content mode, as a JSON value (what a structured
    value parses to; checking that it is a valid event is the reader's). BindingError if a
    binary-mode record's data is not JSON; orjson.JSONDecodeError (a ValueError) if a
    structured value is not."""
    if not is_binary_record(headers):
        return orjson.loads(value or b"")
    attributes: dict[str, str] = {}
    content_type = None
    for name, raw in _named(headers).items():
        lowered = name
        if lowered == "content-type":
            content_type = raw.decode(errors="replace")
        elif lowered.startswith(KAFKA_PREFIX):
            attributes[lowered[len(KAFKA_PREFIX):]] = raw.decode(errors="replace")
    return from_binary(attributes, content_type, value or b"")


def is_binary_request(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP request carries a binary-mode event: a `ce-specversion` header, and a
    content type that is no event format (which says structured mode, as the binding has it)."""
    content_type = next((v for n, v in headers.items() if n.lower() == "content-type"), None)
    return not _structured(content_type) and any(
        name.lower() == f"{HTTP_PREFIX}specversion" for name in headers)


def event_of_request(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The event of a binary-mode HTTP request: attributes from the `ce-*` headers
    (percent-decoded, as the HTTP binding encodes them), `datacontenttype` from `Content-Type`,
    data from the body. BindingError if the data is not JSON."""
    attributes = {name.lower()[len(HTTP_PREFIX):]: unquote(value)
                  for name, value in headers.items() if name.lower().startswith(HTTP_PREFIX)}
    content_type = next((v for n, v in headers.items() if n.lower() == "content-type"), None)
    return from_binary(attributes, content_type, body)


def from_binary(attributes: Mapping[str, str], content_type: str | None,
                data: bytes) -> dict[str, Any]:
    """A binary-mode event as the structured JSON object every reader takes: `attributes` by
    name, `datacontenttype` the message's media type, `data` the payload parsed as JSON (none
    when empty). Our events carry JSON data; other data is refused with the reason."""
    event: dict[str, Any] = dict(attributes)
    kind = media_type(content_type)
    if kind and kind != "application/json":  # what the envelope's schema allows
        raise DataNotJson(f"binary-mode event data must be application/json, not '{kind}'")
    if kind:  # without parameters: JSON is UTF-8, a charset says nothing more
        event["datacontenttype"] = kind
    if data.strip():
        try:
            event["data"] = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BindingError(f"binary-mode event data is not valid JSON: {exc}") from None
    return event
