"""The channels' providers, and one message from command to provider: render the template,
build the channel's message (email with tracking, SMS, CRM task, webhook) and hand it to the
channel's provider.

`prepare` does everything that can fail for reasons of the message itself (template, address,
channel not configured) before anything is recorded; `send` is the provider call alone, which
awaits the caller's hand-off (adapters/handoff.py) at the point after which the provider may
have the message. Both raise DispatchError subclasses only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr

from schemas.records import SendMessage
from services.dispatch.adapters.crm import TaskApi
from services.dispatch.adapters.handoff import Handoff
from services.dispatch.adapters.sms import SmsGateway
from services.dispatch.adapters.smtp import Mailer
from services.dispatch.adapters.templates import TemplateStore
from services.dispatch.adapters.webhook import WebhookSender
from services.dispatch.domain.email import Sender, build_email
from services.dispatch.domain.errors import ProviderRejected
from services.dispatch.domain.links import Tracker
from services.dispatch.domain.messages import (
    Sms,
    Task,
    Webhook,
    build_sms,
    build_task,
    build_webhook,
    template_variables,
)

Prepared = EmailMessage | Sms | Task | Webhook


@dataclass(frozen=True, slots=True)
class Channels:
    """The providers; None for a channel that is not configured."""

    mailer: Mailer | None = None
    sms: SmsGateway | None = None
    tasks: TaskApi | None = None
    webhooks: WebhookSender | None = None


@dataclass(frozen=True, slots=True)
class Composer:
    """Everything needed to turn a command into a channel message."""

    templates: TemplateStore
    sender: Sender
    tracking_base_url: str
    tracking_key: bytes
    token_ttl: timedelta
    unsubscribe_ttl: timedelta | None = None  # None: token_ttl
    track_opens: bool = True
    track_clicks: bool = True
    brand: str = "Nurture"
    sender_name: str = "The Nurture team"
    site_url: str = "https://www.example.com"
    crm_default_owner: str | None = None  # owner of tasks for leads with none

    def prepare(self, cmd: SendMessage, *, channels: Channels, now: datetime) -> Prepared:
        """The message to hand to the provider. Raises TemplateError, InvalidAddress or
        ProviderRejected(`channel_not_configured`)."""
        if _provider(channels, cmd.channel) is None:
            raise ProviderRejected("channel_not_configured",
                                   f"no {cmd.channel} provider is configured")
        self.templates.require(cmd.template, cmd.channel)
        tracker = Tracker(cmd, self.tracking_base_url, self.tracking_key, now, self.token_ttl,
                          self.unsubscribe_ttl)
        extra = {"brand": self.brand, "sender_name": self.sender_name, "site_url": self.site_url}
        if cmd.channel != "crm_task":  # the lead's own link; a task goes to the owner
            extra["unsubscribe_url"] = tracker.url("unsubscribe")
        variables = template_variables(cmd, **extra)
        if cmd.channel == "email":
            assert cmd.template is not None  # require() checked it
            content = self.templates.render_email(cmd.template, variables)
            return build_email(cmd, content, sender=self.sender, tracker=tracker,
                               track_opens=self.track_opens, track_clicks=self.track_clicks,
                               now=now)
        if cmd.channel == "sms":
            assert cmd.template is not None
            return build_sms(cmd, self.templates.render(cmd.template, "sms.txt", variables))
        text = self.templates.optional(cmd.template, "body.txt", variables)
        if cmd.channel == "crm_task":
            return build_task(cmd, body=text, now=now, default_owner=self.crm_default_owner)
        return build_webhook(cmd, text=text, now=now)


async def send(channels: Channels, message: Prepared, *, now: datetime,
               handoff: Handoff) -> str:
    """Hand `message` to its provider, which awaits `handoff` at its hand-off point; the
    provider's id of it. Raises ProviderError, or what `handoff` raises."""
    if isinstance(message, EmailMessage) and channels.mailer is not None:
        return await channels.mailer.send(message, handoff=handoff)
    if isinstance(message, Sms) and channels.sms is not None:
        return await channels.sms.send(message, handoff=handoff)
    if isinstance(message, Task) and channels.tasks is not None:
        return await channels.tasks.create(message, handoff=handoff)
    if isinstance(message, Webhook) and channels.webhooks is not None:
        return await channels.webhooks.send(message, now=now, handoff=handoff)
    raise ProviderRejected("channel_not_configured", f"no provider for {type(message).__name__}")


def message_id_domain(from_address: str) -> str:
    """The domain of the sender's address (`localhost` if it has none)."""
    address = parseaddr(from_address)[1]
    return address.rpartition("@")[2] or "localhost"


def _provider(channels: Channels, channel: str) -> object | None:
    return {"email": channels.mailer, "sms": channels.sms, "crm_task": channels.tasks,
            "webhook": channels.webhooks}.get(channel)
