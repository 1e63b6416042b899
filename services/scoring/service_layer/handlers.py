"""scoring's one use case, score a consumed record: one record in, the new table value and the
records to produce out. No faust, no I/O: the faust adapter (`adapters/faust_app.py`) does the
table read/write and the sends; tests call this directly. It is the hot path: per record, one
JSON parse, one model check of `data`, the engine, one JSON dump.

What it produces is a `schemas.records.ScoredEvent`, written by `ScoredEvent.encode` straight from
the engine's snapshot (building the nested models per record would cost more than the rest of
the encoding)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas import DATA_MODELS
from schemas.bindings import (
    TYPE_HEADER,
    BindingError,
    event_of_record,
    is_binary_record,
    record_headers,
)
from schemas.cloudevent import linked_erasure, merged_event, require_key_attributes
from schemas.normalize import normalized
from schemas.records import ScoredEvent
from schemas.vocabulary import (
    CONTROL_EVENTS,
    ERASED_EVENT,
    LINKED_EVENT,
    MERGED_EVENT,
    PAGE_LINKS,
    SCORE_DUE_EVENT,
    event_epoch,
    rfc3339,
)
from services.common.kafka.deadletter import Origin, dead_letter
from services.common.kafka.topics import Topics
from services.scoring.domain.engine import Snapshot, absorb, apply, event_key
from services.scoring.domain.model import ScoringModel
from services.scoring.domain.state import LeadState

CONSUMER = "nurture-scoring"
OUT_CONTENT_TYPE = b"application/json"


FORWARDS_ATTRIBUTE = "nurtureforwards"
MAX_FORWARDS = 8


class BadEvent(ValueError):
    """The record is not an event the scorer can use; it goes to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Result:
    outcome: str  # scored | duplicate | late | dead_lettered | erased | linked | merged | forwarded
    event_type: str
    state: bytes | None  # new table value; None = leave the table alone
    out: list[Outgoing]
    snapshot: Snapshot | None = None
    erase: bool = False  # delete the lead's table entry (a tombstone in the changelog)
    lead: LeadState | None = None  # what `state` encodes, for the caller to pass in next time


def decode_event(value: bytes | None,
                 headers: Sequence[tuple[str, bytes]] | None = None) -> dict[str, Any]:
    """The event of a record in either CloudEvents content mode (`schemas.bindings`), checked
    just enough to score it safely (ingest validated what it published)."""
    binary = is_binary_record(headers)
    if not value and not binary:
        raise BadEvent("empty record value")
    try:
        event = event_of_record(headers, value)
    except BindingError as exc:
        raise BadEvent(str(exc)) from None
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"{'data' if binary else 'value'} is not JSON: {exc}") from None
    return check_event(event)


def check_event(event: Any) -> dict[str, Any]:
    """`event` (normalized: `schemas.normalize`) if it is a JSON object with what scoring
    needs, else BadEvent saying what lacks."""
    try:
        return normalized(require_key_attributes(event))
    except ValueError as exc:
        raise BadEvent(str(exc)) from None


def check_data(event: Mapping[str, Any]) -> None:
    """BadEvent unless `type` is a known event type and `data` satisfies its model.

    Ingest validated it against the JSON Schemas; this catches what reached the topic another
    way (a producer that skipped ingest, a replayed dead letter). The pydantic models are the
    schemas' twins (tests/schemas/test_contracts.py) and cost a few microseconds per event."""
    model = DATA_MODELS.get(event["type"])
    if model is None:
        raise BadEvent(f"unknown event type '{event['type']}'")
    try:
        model.model_validate(event.get("data", {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(["data", *(str(p) for p in first["loc"])])
        raise BadEvent(f"{path}: {first['msg']} ({exc.error_count()} problem(s) in data)") \
            from None


FUTURE_TOLERANCE_SECONDS = 86400.0


def event_time(event: Mapping[str, Any], fallback_ms: int, *, cap: bool = True) -> float:
    """The event's time; without one, the record's. A time far past the record's own (a wrong
    client clock) is capped there, so one bad event cannot push a lead's clock into the future
    and freeze its score (`cap=False`: a control event, whose time is the orchestrator's clock,
    which may be moved ahead of the record's)."""
    raw = event.get("time")
    if raw is None:
        return fallback_ms / 1000.0
    try:
        epoch = event_epoch(raw)
    except ValueError as exc:
        raise BadEvent(str(exc)) from None
    if cap and fallback_ms and epoch > fallback_ms / 1000.0 + FUTURE_TOLERANCE_SECONDS:
        return fallback_ms / 1000.0
    return epoch


class Processor:
    """Scores records for the worker; holds the loaded models and the output topics."""

    def __init__(self, models: Sequence[ScoringModel], topics: Topics, *,
                 recent_ids: int = 64) -> None:
        self.models = tuple(models)
        self.topics = topics
        self.recent_ids = recent_ids

    def process(self, *, key: bytes | None, value: bytes | None, origin: Origin,
                timestamp_ms: int, state: bytes | LeadState | None, now: datetime,
                headers: Sequence[tuple[str, bytes]] | None = None) -> Result:
        """Score one record (`headers`: its own, which carry a binary-mode event's attributes);
        anything that goes wrong with it becomes a dead letter (with the reason and the record
        as it was), so one bad record can neither stop the worker nor vanish.

        `state`: the lead's table value, or the `Result.lead` of its last result when the
        table still holds that result's `state` (saves decoding it). The object is changed in
        place, so after a result without a `state` it must not be passed in again: it may have
        been changed part way."""
        try:
            return self._score(key, value, timestamp_ms, state, headers)
        except Exception as exc:  # every failure of one record is dead-lettered, with why
            reason = str(exc) if isinstance(exc, BadEvent) else f"{type(exc).__name__}: {exc}"
            dl_key, dl_value, dl_headers = dead_letter(
                key=key, value=value, origin=origin, error=reason, consumer=CONSUMER,
                failed_at=now, headers=headers)
            return Result("dead_lettered", "unknown", None,
                          [Outgoing(self.topics.deadletter, dl_key, dl_value, dl_headers)])

    def _score(self, key: bytes | None, value: bytes | None, timestamp_ms: int,
               state: bytes | LeadState | None,
               headers: Sequence[tuple[str, bytes]] | None) -> Result:
        event = decode_event(value, headers)
        t = event_time(event, timestamp_ms, cap=event["type"] not in CONTROL_EVENTS)
        if key != event["subject"].encode():
            raise BadEvent("record key is not the event's subject (the lead id)")
        lead_id, etype = event["subject"], event["type"]
        lead = state if isinstance(state, LeadState) else \
            LeadState.from_bytes(state) if state else None
        if etype == ERASED_EVENT:  # the person was erased: forget the lead, pass it on
            return self._erase(event, lead_id, lead, t)
        if etype == MERGED_EVENT and lead is not None \
                and lead.merged_into == (event.get("data") or {}).get("from"):
            raise BadEvent("data.from: this lead is linked to that id, which is linked to it: "
                           "the links make a cycle")
        if lead is not None and lead.merged_into is not None and etype != LINKED_EVENT:
            return self._forward(event, lead.merged_into)
        if etype == LINKED_EVENT:
            check_data(event)
            return self._link(event, lead_id, lead or LeadState(), t)
        if etype == MERGED_EVENT:
            return self._merge(event, lead_id, lead or LeadState())
        if etype != SCORE_DUE_EVENT:  # a score due: no data, no points, only time
            check_data(event)
        lead = lead or LeadState()
        snapshot = apply(lead, event, lead_id=lead_id, event_time=t, models=self.models,
                         recent_ids=self.recent_ids)
        return self._scored(event, snapshot, None if snapshot.duplicate else lead)

    def _scored(self, event: Mapping[str, Any], snapshot: Snapshot,
                lead: LeadState | None, outcome: str | None = None) -> Result:
        """The scored event for `snapshot`; `lead`: the state to keep (None: unchanged)."""
        out_value = ScoredEvent.encode(event, snapshot_dict(snapshot))
        headers = scored_headers(event["type"])
        outcome = outcome or ("duplicate" if snapshot.duplicate else (
            "late" if any(m.late for m in snapshot.models) else "scored"))
        return Result(outcome, event["type"], None if lead is None else lead.to_bytes(),
                      [Outgoing(self.topics.scored_events, snapshot.lead_id.encode(), out_value,
                                headers)], snapshot, lead=lead)

    def _event_out(self, event: Mapping[str, Any]) -> Outgoing:
        """`event` back onto the events topic, keyed by its subject."""
        return Outgoing(self.topics.events, event["subject"].encode(), orjson.dumps(event),
                        [(n, v.encode()) for n, v in record_headers(event["type"])])

    def _erase(self, event: dict[str, Any], lead_id: str, lead: LeadState | None,
               t: float) -> Result:
        """Forget the lead, tell the orchestrator and dispatch (the scored `lead.erased`), and
        erase every id the lead absorbed (docs/identity.md): each gets its own `lead.erased`."""
        out_value = ScoredEvent.encode(event, {
            "lead_id": lead_id, "as_of": rfc3339(t), "duplicate": False, "models": {}})
        out = [Outgoing(self.topics.scored_events, lead_id.encode(), out_value,
                        scored_headers(ERASED_EVENT))]
        for absorbed in lead.merged if lead is not None else ():
            out.append(self._event_out(linked_erasure(absorbed, cause=event["id"], time=t)))
        return Result("erased", ERASED_EVENT, None, out, erase=True)

    def _forward(self, event: dict[str, Any], target: str) -> Result:
        """An event of an id linked to `target`: it counts for `target` (once: its source and
        id stay, and are deduplicated there). How often it was forwarded rides along, so links
        that make a cycle dead-letter it instead of passing it round for ever."""
        hops = event.get(FORWARDS_ATTRIBUTE, 0)
        hops = hops + 1 if isinstance(hops, int) else 1
        if hops > MAX_FORWARDS:
            raise BadEvent(f"forwarded through {MAX_FORWARDS} linked ids: the links make a cycle")
        return Result("forwarded", event["type"], None, [self._event_out(
            {**event, "subject": target, FORWARDS_ATTRIBUTE: hops})])

    def _link(self, event: dict[str, Any], lead_id: str, lead: LeadState, t: float) -> Result:
        """`lead_id` is `data.lead_id`: hand this id's state over in a `lead.merged` keyed by
        the target, and send the id's later events there. The same link redelivered hands it
        over again (the target takes it once); another link of the same pair (every call of
        an identified visitor makes one) changes nothing."""
        target = event["data"]["lead_id"]
        if target == lead_id:
            raise BadEvent("data.lead_id: is the event's subject (an id cannot be linked to "
                           "itself)")
        if lead.merged_into not in (None, target):
            raise BadEvent("data.lead_id: the subject is already linked to another lead")
        if target in lead.merged:
            raise BadEvent("data.lead_id: that lead was merged into the subject (a link "
                           "back would make a cycle)")
        if event["data"].get("via") in PAGE_LINKS and ("email" in lead.profile
                                                       or "phone" in lead.profile):
            raise BadEvent("data.lead_id: the subject is a known lead (it has an email or a "
                           "phone); a page's link folds only an anonymous visitor into a lead")
        key = event_key(event)
        if lead.merged_into == target and key not in lead.seen:
            return Result("duplicate", LINKED_EVENT, None, [])  # linked by an earlier link
        # first seen, or this link again (redelivered: its hand-over may be lost): hand over
        lead.seen.setdefault(key, None)
        lead.merged_into = None
        handed = lead.to_dict()
        lead.merged_into = target
        merge = merged_event(target, lead_id, state=handed, time=t,
                             via=event["data"].get("via"))
        return Result("linked", LINKED_EVENT, lead.to_bytes(), [self._event_out(merge)],
                      lead=lead)

    def _merge(self, event: dict[str, Any], lead_id: str, lead: LeadState) -> Result:
        """Take over the state of `data.from` (once), and report the merged lead."""
        data = event.get("data") or {}
        absorbed, handed = data.get("from"), data.get("state")
        if not isinstance(absorbed, str) or not absorbed or not isinstance(handed, dict):
            raise BadEvent("data.from and data.state are required in lead.merged")
        snapshot = absorb(lead, LeadState.from_dict(handed), lead_id=lead_id,
                          other_id=absorbed, models=self.models, recent_ids=self.recent_ids)
        reported = {**event, "data": {k: v for k, v in data.items() if k != "state"}}
        return self._scored(reported, snapshot, None if snapshot.duplicate else lead,
                            "duplicate" if snapshot.duplicate else "merged")


def scored_headers(event_type: str) -> list[tuple[str, bytes]]:
    """The headers of a scored-event record: JSON, and the event's type (`schemas.bindings`)."""
    return [("content-type", OUT_CONTENT_TYPE), (TYPE_HEADER, event_type.encode())]


def snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The `score` of a ScoredEvent (a `schemas.records.LeadScore`) for an engine snapshot."""
    return {
        "lead_id": snapshot.lead_id,
        "as_of": rfc3339(snapshot.as_of),
        "duplicate": snapshot.duplicate,
        "models": {m.model: m.to_dict() for m in snapshot.models},
    }
