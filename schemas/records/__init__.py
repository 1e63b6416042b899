"""The records on Nurture's internal topics, as frozen versioned models (the contracts between the
services). Producers build records only through these models and consumers parse only through
them, once per hop:

| topic | model | producer → consumer |
|---|---|---|
| `nurture.scored-events.v1` | `ScoredEvent` | scoring → orchestrator |
| `nurture.dispatch.v1` | `SendMessage` | orchestrator → dispatch |
| `nurture.stages.v1` | `StageChanged` | orchestrator → dashboards, downstream |
| `nurture.deadletter.v1` | `DeadLetter` | every consumer → `nurture-dlq` |

`nurture.events.v1` carries CloudEvents (`schemas.CloudEvent`, `schemas.parse_event`). Each model's
JSON Schema and example are in `schemas/records/*.schema.json` (see schemas/README.md).
"""

from schemas.records.base import Record, RecordError
from schemas.records.deadletter import DeadLetter, Origin
from schemas.records.dispatch import SendMessage
from schemas.records.scored import Contribution, Crossing, LeadScore, ModelScore, ScoredEvent
from schemas.records.stages import StageChanged

RECORDS: tuple[type[Record], ...] = (ScoredEvent, SendMessage, StageChanged, DeadLetter)
"""Every record model, one per internal topic."""

__all__ = [
    "RECORDS",
    "Contribution",
    "Crossing",
    "DeadLetter",
    "LeadScore",
    "ModelScore",
    "Origin",
    "Record",
    "RecordError",
    "ScoredEvent",
    "SendMessage",
    "StageChanged",
]
