"""Reading `nurture.events.v1` for dispatch: the suppression changes (unsubscribes, complaints,
hard bounces, SMS opt-outs, consent) and the erasures (`lead.erased`, published by the
orchestrator) and the merges (`lead.merged`, published by scoring: docs/identity.md) in a
batch of records, in either CloudEvents content mode (`schemas.bindings`).
Every other event is skipped, by the type its headers name when they name one, without parsing;
a record that is not JSON is not for us (ingest validated what it published)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from schemas.bindings import event_of_record, record_type
from schemas.cloudevent import require_key_attributes
from schemas.vocabulary import ERASED_EVENT, MERGED_EVENT
from services.common.kafka.loops import ConsumedRecord
from services.dispatch.domain.suppressions import INTERESTING, Change, changes_of, latest


def _events(records: Sequence[ConsumedRecord], types: Collection[str]) -> Iterator[dict[str, Any]]:
    """The events of `types` in a batch: others skipped by the type their headers name; what
    is not an event (not JSON, no key attributes) skipped as not for us."""
    for record in records:
        named = record_type(record.headers)
        if named is not None and named not in types:
            continue
        try:
            event = require_key_attributes(event_of_record(record.headers, record.value))
        except ValueError:  # orjson.JSONDecodeError and BindingError are ones
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


def merged_leads(records: Sequence[ConsumedRecord]) -> list[tuple[str, str]]:
    """(absorbing lead, absorbed lead) of each merge in a batch of event records."""
    merges = []
    for event in _events(records, (MERGED_EVENT,)):
        absorbed = (event.get("data") or {}).get("from")
        if isinstance(absorbed, str) and absorbed and absorbed != event["subject"]:
            merges.append((event["subject"], absorbed))
    return merges
