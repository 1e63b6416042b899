"""Reading `nurture.events.v1` for dispatch: the suppression changes (unsubscribes, complaints,
hard bounces, SMS opt-outs, consent) and the erasures (`lead.erased`, published by the
orchestrator) in a batch of records. Every other event is skipped, by its `ce_type` header when
it has one, without parsing; a record that is not JSON is not for us (ingest validated what it
published)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeAlias

import orjson
from aiokafka.structs import ConsumerRecord

from schemas.vocabulary import ERASED_EVENT
from services.dispatch.domain.suppressions import INTERESTING, Change, changes_of, latest

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def suppression_changes(records: Sequence[Record], *, now: datetime) -> list[Change]:
    """The suppression changes in a batch of event records, one per lead and channel."""
    found: list[Change] = []
    for record in records:
        header = dict(record.headers or ()).get("ce_type")
        if header is not None and header.decode(errors="replace") not in INTERESTING:
            continue
        try:
            event = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("type") in INTERESTING:
            found += changes_of(event, now=now)
    return latest(found)


def erased_leads(records: Sequence[Record]) -> list[str]:
    """The lead ids a batch of event records erases."""
    found: list[str] = []
    for record in records:
        header = dict(record.headers or ()).get("ce_type")
        if header is not None and header != ERASED_EVENT.encode():
            continue
        try:
            event = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("type") == ERASED_EVENT \
                and isinstance(event.get("subject"), str):
            found.append(event["subject"])
    return sorted(set(found))
