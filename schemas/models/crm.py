"""Models for crm.* event data (mirror data/crm.*.schema.json)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic import StringConstraints as S

from schemas.formats import DOMAIN
from schemas.models.base import (
    Amount,
    ConsentStatus,
    Country,
    Currency,
    Date,
    Email,
    EventData,
    Identifier,
    OpenEventData,
    Phone,
    PositiveInt,
    Text,
    Timezone,
)

Seniority = Literal[
    "intern", "individual_contributor", "manager", "director", "vp", "c_level", "owner", "other"
]
AttributeValue = Annotated[str, S(max_length=1000)] | bool | int | float
Attributes = Annotated[dict[str, AttributeValue], Field(max_length=100)]


class Consent(EventData):
    """Consent per channel; channels left out are unchanged."""

    email: ConsentStatus | None = None
    sms: ConsentStatus | None = None
    phone: ConsentStatus | None = None


class LeadUpserted(EventData):
    """crm.lead_upserted: the profile fields that changed (at least one).

    Custom fields go into `attributes`; unknown top-level fields are rejected.
    """

    email: Email | None = None
    phone: Phone | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    title: Text | None = None
    seniority: Seniority | None = None
    company: Text | None = None
    company_domain: Annotated[str, S(max_length=253, pattern=DOMAIN)] | None = None
    industry: Text | None = None
    company_size: PositiveInt | None = None
    country: Country | None = None
    timezone: Timezone | None = None
    consent: Consent | None = None
    owner_id: Identifier | None = None
    contract_renewal_date: Date | None = None
    lead_source: Text | None = None
    attributes: Attributes | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        # Mirrors the schema's minProperties: 1.
        if isinstance(data, dict) and not data:
            raise ValueError("at least one profile property is required")
        return data


class OpportunityOpened(OpenEventData):
    """crm.opportunity_opened: a sales opportunity was opened for the lead."""

    opportunity_id: Identifier
    amount: Amount | None = None
    currency: Currency | None = None
    stage: Text | None = None
    owner_id: Identifier | None = None


class DealWon(OpenEventData):
    """crm.deal_won: an opportunity of the lead was won."""

    opportunity_id: Identifier
    amount: Amount | None = None
    currency: Currency | None = None


class DealLost(OpenEventData):
    """crm.deal_lost: an opportunity of the lead was lost."""

    opportunity_id: Identifier
    amount: Amount | None = None
    currency: Currency | None = None
    reason: Text | None = None


class OwnerAssigned(OpenEventData):
    """crm.owner_assigned: a CRM user now owns the lead."""

    owner_id: Identifier


class LeadsMerged(OpenEventData):
    """crm.leads_merged: the CRM merged two records of one person; the loser folds into the
    winner (ingest links them: `identity.linked`)."""

    winner_id: Identifier
    loser_id: Identifier


class TaskCompleted(OpenEventData):
    """crm.task_completed: a CRM task about the lead was completed."""

    task_id: Identifier
    outcome: Text | None = None
