"""Frozen pydantic models of the envelope and of each event type's `data`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel

from schemas.models.activity import (
    MessageFailed,
    MessageSent,
    MessageSuppressed,
    ProductActivity,
)
from schemas.models.crm import (
    DealLost,
    DealWon,
    LeadsMerged,
    LeadUpserted,
    OpportunityOpened,
    OwnerAssigned,
    TaskCompleted,
)
from schemas.models.envelope import CloudEvent
from schemas.models.identity import IdentityLinked
from schemas.models.messaging import (
    EmailBounced,
    EmailClicked,
    EmailComplained,
    EmailDelivered,
    EmailOpened,
    EmailReplied,
    EmailUnsubscribed,
    SmsDelivered,
    SmsOptedOut,
    SmsReplied,
)
from schemas.models.web import (
    ContentDownloaded,
    FormSubmitted,
    PageViewed,
    WebinarAttended,
    WebinarRegistered,
)

DATA_MODELS: Mapping[str, type[BaseModel]] = MappingProxyType(
    {
        "web.page_viewed": PageViewed,
        "web.form_submitted": FormSubmitted,
        "web.content_downloaded": ContentDownloaded,
        "web.webinar_registered": WebinarRegistered,
        "web.webinar_attended": WebinarAttended,
        "email.delivered": EmailDelivered,
        "email.opened": EmailOpened,
        "email.clicked": EmailClicked,
        "email.bounced": EmailBounced,
        "email.complained": EmailComplained,
        "email.unsubscribed": EmailUnsubscribed,
        "email.replied": EmailReplied,
        "sms.delivered": SmsDelivered,
        "sms.replied": SmsReplied,
        "sms.opted_out": SmsOptedOut,
        "crm.lead_upserted": LeadUpserted,
        "crm.opportunity_opened": OpportunityOpened,
        "crm.deal_won": DealWon,
        "crm.deal_lost": DealLost,
        "crm.owner_assigned": OwnerAssigned,
        "crm.task_completed": TaskCompleted,
        "crm.leads_merged": LeadsMerged,
        "identity.linked": IdentityLinked,
        "product.activity": ProductActivity,
        "message.sent": MessageSent,
        "message.failed": MessageFailed,
        "message.suppressed": MessageSuppressed,
    }
)
"""The data model for each event type, e.g. DATA_MODELS["web.page_viewed"] is PageViewed."""

__all__ = [
    "DATA_MODELS",
    "CloudEvent",
    "ContentDownloaded",
    "DealLost",
    "DealWon",
    "EmailBounced",
    "EmailClicked",
    "EmailComplained",
    "EmailDelivered",
    "EmailOpened",
    "EmailReplied",
    "EmailUnsubscribed",
    "FormSubmitted",
    "IdentityLinked",
    "LeadUpserted",
    "LeadsMerged",
    "MessageFailed",
    "MessageSent",
    "MessageSuppressed",
    "OpportunityOpened",
    "OwnerAssigned",
    "PageViewed",
    "ProductActivity",
    "SmsDelivered",
    "SmsOptedOut",
    "SmsReplied",
    "TaskCompleted",
    "WebinarAttended",
    "WebinarRegistered",
]
