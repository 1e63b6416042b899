"""`new_event`: the one place a CloudEvent is put together, for every producer of events (ingest's
webhook, Segment and tracking translations, dispatch's `message.*` outcomes, the orchestrator's
erasure and inbound-SMS events). The result is the structured-mode JSON object that
`validate_event` and `parse_event` read."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schemas.vocabulary import ERASED_EVENT, MERGED_EVENT, SCORE_DUE_EVENT, rfc3339

SPECVERSION = "1.0"
JSON = "application/json"


def new_event(*, id: str, source: str, type: str, subject: str, data: Mapping[str, Any],
              time: str | float | datetime | None = None,
              datacontenttype: str | None = JSON, **extensions: Any) -> dict[str, Any]:
    """A CloudEvents 1.0 event as a JSON-ready dict.

    `time` is the event time: an RFC 3339 string is kept as given, epoch seconds and aware
    datetimes are written as UTC with milliseconds; None leaves it out (ingest then stamps the
    receipt time). `datacontenttype=None` leaves that attribute out. Extension attributes are
    passed by keyword (e.g. `traceparent=...`); None values are left out.
    """
    event: dict[str, Any] = {"specversion": SPECVERSION, "id": id, "source": source,
                             "type": type, "subject": subject}
    if time is not None:
        event["time"] = _time(time)
    if datacontenttype is not None:
        event["datacontenttype"] = datacontenttype
    event.update((name, value) for name, value in extensions.items() if value is not None)
    event["data"] = dict(data)
    return event


KEY_ATTRIBUTES = ("id", "source", "type", "subject")
"""What consumers key on: identity (`source` + `id`), `type`, and the lead (`subject`)."""


def require_key_attributes(event: object) -> dict[str, Any]:
    """`event` if it is a JSON object whose key attributes are non-empty strings and whose `data`
    (if any) is an object; else ValueError naming what is wrong. The cheap check of an event that
    was validated in full upstream (ingest validates every event against the schemas)."""
    if not isinstance(event, dict):
        raise ValueError("value is not a JSON object")
    for attr in KEY_ATTRIBUTES:
        if not isinstance(event.get(attr), str) or not event[attr]:
            raise ValueError(f"missing or empty '{attr}'")
    if not isinstance(event.get("data", {}), Mapping):
        raise ValueError("'data' is not an object")
    return event


def _time(value: str | float | datetime) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("event time must be timezone-aware")
        return rfc3339(value.astimezone(UTC).timestamp())
    return rfc3339(value)


SCORE_DUE_SOURCE = "nurture-orchestrator/decay"


def score_due_event(lead_id: str, model: str, at: float) -> dict[str, Any]:
    """The `lead.score_due` control event (`schemas.vocabulary.SCORE_DUE_EVENT`): the score of
    `lead_id` in `model` is due to cross a threshold by decay alone at `at`. Its id is the lead
    (hashed: ids are kept as dedupe marks after an erasure), the model and the time, so the same
    crossing asked twice (a timer fired again after a crash) is one event, and two leads'
    crossings in the same second are two. The orchestrator publishes it; the dry run and the
    backtest play it."""
    return new_event(id=f"score-due-{model}-{int(at)}-{_hashed(lead_id)}",
                     source=SCORE_DUE_SOURCE, type=SCORE_DUE_EVENT, subject=lead_id, time=at,
                     data={"model": model})


IDENTITY_SOURCE = "nurture-scoring/identity"


def _hashed(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=8).hexdigest()


def merged_event(lead_id: str, absorbed: str, *, state: Mapping[str, Any], time: float,
                 via: str | None = None) -> dict[str, Any]:
    """The `lead.merged` control event (`schemas.vocabulary.MERGED_EVENT`, docs/identity.md):
    `lead_id` takes over `absorbed` and its scoring `state` (opaque to every other service).
    Its id is the pair (hashed), so a link handed over twice is one merge."""
    return new_event(id=f"merge-{_hashed(absorbed)}-{_hashed(lead_id)}", source=IDENTITY_SOURCE,
                     type=MERGED_EVENT, subject=lead_id, time=time,
                     data={"from": absorbed, "via": via, "state": dict(state)})


def linked_erasure(absorbed: str, *, cause: str, time: float) -> dict[str, Any]:
    """`lead.erased` for an id a lead absorbed, when that lead is erased (`cause`: the id of
    the lead's own erasure event, so the same erasure seen twice is one event)."""
    return new_event(id=f"{cause}-{_hashed(absorbed)}", source=IDENTITY_SOURCE,
                     type=ERASED_EVENT, subject=absorbed, time=time, data={})
