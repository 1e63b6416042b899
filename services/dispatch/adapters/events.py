"""Reading `nurture.events.v1` for dispatch: the suppression changes (unsubscribes, complaints,
hard bounces, SMS opt-outs, consent) and the erasures (`lead.erased`, published by the
orchestrator) in a batch of records. Every other event is skipped, by its `ce_type` header when
it has one, without parsing; a record that is not JSON is not for us (ingest validated what it
published)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson

from schemas.cloudevent import require_key_attributes
from schemas.vocabulary import ERASED_EVENT
from services.common.kafka.loops import ConsumedRecord
from services.dispatch.domain.suppressions import INTERESTING, Change, changes_of, latest


def _events(records: Sequence[ConsumedRecord], types: Collection[str]) -> Iterator[dict[str, Any]]:
    """The events of `types` in a batch: others skipped by their `ce_type` header when they have
    one; what is not an event (not JSON, no key attributes) skipped as not for us."""
    for record in records:
        header = dict(record.headers or ()).get("ce_type")
        if header is not None and header.decode(errors="replace") not in types:
            continue
        try:
            event = require_key_attributes(orjson.loads(record.value or b""))
        except ValueError:  # orjson.JSONDecodeError is one
            continue
        if event["type"] in types:
            yield event


def suppression_changes(records: Sequence[ConsumedRecord], *, now: datetime) -> list[Change]:
    """The suppression changes in a batch of event records, one per lead and channel."""
    return latest([change for event in _events(records, INTERESTING)
                   for change in changes_of(event, now=now)])


def erased_leads(records: Sequence[ConsumedRecord]) -> list[str]:
    """The lead ids a batch of event records erases."""
    return sorted({event["subject"] for event in _events(records, (ERASED_EVENT,))})
