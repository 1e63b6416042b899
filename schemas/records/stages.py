"""`nurture.stages.v1`: a lead's lifecycle stage changed (for dashboards and downstream systems)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.records.base import Record, Timestamp


class StageChanged(Record):
    """The lead moved from `from_stage` (None: it was just created) to `to_stage` at `at`;
    `cause` says why (e.g. `score:default>=10`, `event:crm.deal_won`). Keyed by the lead id."""

    TOPIC: ClassVar[str] = "nurture.stages.v1"

    lead_id: str = Field(min_length=1, max_length=200)
    from_stage: str | None
    to_stage: str = Field(min_length=1)
    at: Timestamp
    cause: str
