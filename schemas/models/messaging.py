"""Models for email.* and sms.* event data (mirror data/email.*.schema.json, data/sms.*)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict
from pydantic import StringConstraints as S

from schemas.models.base import EmailMessageRef, EventData, Identifier, Keyword, OpenEventData, Url


class EmailDelivered(EmailMessageRef):
    """email.delivered: the provider delivered a Nurture email."""


class EmailOpened(EmailMessageRef):
    """email.opened: the lead opened a Nurture email."""


class EmailClicked(EmailMessageRef):
    """email.clicked: the lead clicked a link in a Nurture email."""

    url: Url


class EmailBounced(EmailMessageRef):
    """email.bounced: a Nurture email bounced (hard = permanent)."""

    bounce_type: Literal["hard", "soft"]
    diagnostic: Annotated[str, S(max_length=1000)] | None = None


class EmailComplained(EmailMessageRef):
    """email.complained: the lead reported a Nurture email as spam."""


class EmailUnsubscribed(EmailMessageRef):
    """email.unsubscribed: the lead unsubscribed from email."""

    method: Literal["one_click", "link", "reply", "provider"] | None = None


class EmailReplied(EmailMessageRef):
    """email.replied: the lead replied; the body is never part of the event."""

    model_config = ConfigDict(extra="forbid")


class SmsDelivered(OpenEventData):
    """sms.delivered: the provider delivered a Nurture SMS."""

    message_id: Identifier
    program_id: Identifier | None = None
    step_id: Identifier | None = None
    template_id: Identifier | None = None


class SmsReplied(EventData):
    """sms.replied: the lead replied to an SMS; only the keyword is kept, never the body."""

    message_id: Identifier | None = None
    keyword: Keyword | None = None


class SmsOptedOut(EventData):
    """sms.opted_out: the lead opted out of SMS (e.g. replied STOP)."""

    message_id: Identifier | None = None
    keyword: Keyword | None = None
