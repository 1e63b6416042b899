"""dispatch settings: environment variables with the `NURTURE_DISPATCH_` prefix, plus
`DATABASE_URL`, the tracking secret `NURTURE_TRACKING_SECRET` (services.common.tracking) and the
shared `KAFKA_*`, `NURTURE_TOPIC_PREFIX`, `NURTURE_LOG_*`.

The defaults run against a local SMTP server on 127.0.0.1:1025 without TLS or auth (e.g.
`python -m aiosmtpd -n -l 127.0.0.1:1025`), with ingest on 127.0.0.1:8080 for tracking links.
SMS, CRM tasks and webhooks are off until their URL / credentials are set: a message for a
channel that is not configured fails with `channel_not_configured`."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.webhooks import usable_secret

_URL = r"^https?://[^\s/]+(/[^\s]*)?$"
Guarantee = Literal["at-most-once", "at-least-once"]


class DispatchSettings(BaseSettings):
    """Database, Kafka group, templates, SMTP, the HTTP channels, tracking and retry timings."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_DISPATCH_", extra="ignore",
                                      use_attribute_docstrings=True)

    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL"),
                              pattern=r"^postgresql\+asyncpg://")
    """PostgreSQL, postgresql+asyncpg://user:password@host:port/database"""
    db_schema: str = Field(default="nurture_dispatch", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """schema of dispatch's tables"""
    host: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on all interfaces
    """listen address"""
    port: int = Field(default=8082, ge=1, le=65535)
    """listen port"""
    group_id: str = Field(default="nurture-dispatch",
                          description="Kafka consumer group (prefixed by NURTURE_TOPIC_PREFIX)")
    templates: str = Field(default="config/templates", description="template directory")

    # what templates and emails say about the sender
    from_address: str = Field(default="Nurture <nurture@localhost>", min_length=3,
                              description="From: of emails, may carry a display name")
    reply_to: str | None = None
    """Reply-To of every email"""
    message_id_domain: str | None = Field(
        default=None, description="right-hand side of Message-ID (default: from the sender)")
    brand: str = Field(default="Nurture", description="{{ brand }} in templates")
    sender_name: str = Field(default="The Nurture team",
                             description="{{ sender_name }} in templates")
    site_url: str = Field(default="https://www.example.com", pattern=_URL,
                          description="{{ site_url }} in templates")

    smtp_host: str = "127.0.0.1"
    """SMTP server host"""
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    """SMTP server port"""
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="none", description="none | starttls | tls (implicit TLS)")
    smtp_username: str | None = Field(default=None, description="SMTP AUTH (off when unset)")
    smtp_password: SecretStr | None = None
    """SMTP AUTH password (with the user name)"""
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    """SMTP connect and command timeout"""
    smtp_validate_certs: bool = True
    """verify the SMTP server's TLS certificate"""
    smtp_ca_file: str | None = Field(default=None,
                                     description="CA bundle for the SMTP server's certificate")

    tracking_base_url: str = Field(default="http://127.0.0.1:8080", pattern=_URL,
                                   description="ingest's public URL, where tracking links point")
    tracking_ttl_days: int = Field(default=90, ge=1, le=3650,
                                   description="how long open and click links work")
    # at least 30 days: the US CAN-SPAM Act wants an opt-out to work that long after sending
    unsubscribe_ttl_days: int = Field(default=365, ge=30, le=3650,
                                      description="how long a message's unsubscribe link works")
    track_opens: bool = True
    """add the open-tracking pixel to emails"""
    track_clicks: bool = True
    """rewrite email links through the click tracker"""
    unsubscribe_mailto: str | None = Field(default=None, pattern=r"^[^\s@<>]+@[^\s@<>]+$",
                                           description="adds a mailto: to List-Unsubscribe")

    sms_base_url: str = Field(default="https://api.twilio.com", pattern=_URL,
                              description="Twilio-compatible API")
    sms_account_sid: str | None = Field(
        default=None, description="SMS is on when SID, auth token and from number are set")
    sms_auth_token: SecretStr | None = None
    """the SMS provider's auth token (Twilio's API, Basic auth with the SID)"""
    sms_from: str | None = None
    """the sending phone number (E.164)"""
    crm_url: str | None = Field(default=None, pattern=_URL,
                                description="CRM task endpoint (CRM tasks off when unset)")
    crm_token: SecretStr | None = Field(default=None, description="bearer token for the CRM")
    crm_default_owner: str | None = Field(default=None, min_length=1, max_length=200)
    """owner id (a person or a queue in the CRM) of hand-off tasks for leads that have no owner;
    unset: such tasks go out with owner_id null and the CRM's own assignment rules decide"""
    webhook_url: str | None = Field(default=None, pattern=_URL,
                                    description="webhook endpoint (webhooks off when unset)")
    webhook_secret: SecretStr | None = Field(
        default=None, description="signing secret: whsec_<base64> or text, at least 16 bytes")
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    """timeout of SMS, CRM and webhook requests"""
    follow_suppressions: bool = Field(
        default=True, description="read unsubscribes, complaints, hard bounces and SMS "
                                  "opt-outs from the events topic into the suppression list")

    max_attempts: int = Field(default=5, ge=1, le=100,
                              description="attempts per message, the first included")
    retry_base_seconds: float = Field(
        default=30.0, ge=0, description="first retry delay; doubles per attempt, jittered")
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    """longest wait between two attempts of a message"""
    # What happens to an attempt interrupted after the hand-off point (SMTP: the message data
    # was being sent; HTTP: the request went out), where only the provider knows whether it took
    # the message. Before that point an interrupted attempt is always resent.
    guarantee_email: Guarantee = Field(
        default="at-most-once", description="at-most-once: an email interrupted after the "
        "hand-off is failed as sent_unconfirmed; at-least-once: resent with the same Message-ID")
    guarantee_sms: Guarantee = Field(
        default="at-most-once", description="as for email; a resend carries the same "
        "Idempotency-Key")
    guarantee_crm_task: Guarantee = Field(
        default="at-least-once", description="as for email; a resend carries the same "
        "Idempotency-Key and external_id")
    guarantee_webhook: Guarantee = Field(
        default="at-least-once", description="as for email; a resend carries the same "
        "webhook-id (receivers dedupe on it)")
    reconcile_channels: str | None = Field(
        default=None, description="removed: set NURTURE_DISPATCH_GUARANTEE_<CHANNEL> instead "
        "(start-up fails while it is set)")
    sending_timeout_seconds: float = Field(
        default=300.0, gt=0, description="an attempt still 'sending' after this was interrupted")
    lease_seconds: float = Field(
        default=120.0, gt=0, description="claimed rows come back after this if the claimer dies")
    poll_seconds: float = Field(default=1.0, gt=0,
                                description="how often each channel looks for due retries")
    recovery_poll_seconds: float = Field(default=30.0, gt=0)
    """how often attempts stuck in `sending` are looked for"""
    relay_idle_seconds: float = Field(default=0.2, gt=0)
    """how often the outbox relay looks for rows when nothing woke it"""
    batch_size: int = Field(default=50, ge=1, le=1000)
    """most due messages a channel loop claims at once"""
    concurrency: int = Field(
        default=16, ge=1, le=200, description="messages in flight per channel (each still "
                                              "sending -> provider call -> sent)")
    smtp_connections: int = Field(default=4, ge=1, le=50,
                                  description="SMTP connections kept open (opened on demand)")
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    """on SIGTERM, how long sends in flight may finish"""
    retention_days: float = Field(
        default=30.0, gt=0, description="keep deliveries in a final status (sent, failed, "
        "suppressed, expired) this long after their last change (fractions of a day allowed). "
        "A delivery is the dedupe mark of its message id, so it must outlive the command in "
        "Kafka: nurture.dispatch.v1 keeps records 14 days (retention.ms), and up to a segment "
        "longer (segment.ms, 7 days by default); a command redelivered after its delivery was "
        "pruned (a group re-reading the topic, offsets lost) would be sent again")
    prune_interval_seconds: float = Field(
        default=300.0, gt=0, description="how often deliveries past the retention are deleted")

    _usable_secret = field_validator("webhook_secret")(usable_secret)

    @model_validator(mode="after")
    def _complete(self) -> DispatchSettings:
        if self.reconcile_channels is not None:
            raise ValueError("NURTURE_DISPATCH_RECONCILE_CHANNELS was replaced by "
                             "NURTURE_DISPATCH_GUARANTEE_EMAIL, _SMS, _CRM_TASK and _WEBHOOK "
                             "(at-most-once | at-least-once); unset it")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("NURTURE_DISPATCH_RETRY_MAX_SECONDS must not be below "
                             "NURTURE_DISPATCH_RETRY_BASE_SECONDS")
        sms = (self.sms_account_sid, self.sms_auth_token, self.sms_from)
        if any(sms) and not all(sms):
            raise ValueError("SMS needs all of NURTURE_DISPATCH_SMS_ACCOUNT_SID, "
                             "NURTURE_DISPATCH_SMS_AUTH_TOKEN and NURTURE_DISPATCH_SMS_FROM")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("NURTURE_DISPATCH_WEBHOOK_URL needs NURTURE_DISPATCH_WEBHOOK_SECRET")
        if self.sending_timeout_seconds <= self.smtp_timeout_seconds \
                or self.sending_timeout_seconds <= self.http_timeout_seconds:
            raise ValueError("NURTURE_DISPATCH_SENDING_TIMEOUT_SECONDS must exceed the SMTP "
                             "and HTTP timeouts")
        return self

    @property
    def resend_unconfirmed(self) -> frozenset[str]:
        """The channels whose attempts interrupted after the hand-off are resent."""
        return frozenset(channel for channel, guarantee in (
            ("email", self.guarantee_email), ("sms", self.guarantee_sms),
            ("crm_task", self.guarantee_crm_task), ("webhook", self.guarantee_webhook))
            if guarantee == "at-least-once")
