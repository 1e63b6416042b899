"""orchestrator settings: environment variables with the `NURTURE_ORCHESTRATOR_` prefix, plus
`DATABASE_URL` and the shared `KAFKA_*`, `NURTURE_TOPIC_PREFIX`, `NURTURE_LOG_*`."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrchestratorSettings(BaseSettings):
    """Database, program files, API tokens and loop timings of the orchestrator."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_ORCHESTRATOR_", extra="ignore",
                                      use_attribute_docstrings=True)

    database_url: str = Field(validation_alias=AliasChoices("DATABASE_URL"),
                              pattern=r"^postgresql\+asyncpg://")
    """PostgreSQL, postgresql+asyncpg://user:password@host:port/database"""
    db_schema: str = Field(default="nurture", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """schema of the orchestrator's tables"""
    programs: str = Field(default="config/programs",
                          description="program files / directories, comma-separated")
    policy: str = Field(default="config/contact-policy.yaml", description="contact policy file")
    stage_model: str = Field(default="b2b", description="scoring model whose mql/sql "
                                                        "thresholds move lifecycle stages")
    host: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on all interfaces
    """listen address"""
    port: int = Field(default=8081, ge=1, le=65535)
    """listen port"""
    api_token: SecretStr | None = Field(
        default=None, description="bearer token for the /v1 API (required to serve)")
    admin_token: SecretStr | None = Field(
        default=None, description="enables /v1/admin (the controllable clock); off when unset")
    enrollment_token: SecretStr | None = Field(
        default=None, description="enables enrollment changes (POST and DELETE "
                                  "/v1/leads/{id}/enrollments, for a CRM integration); off "
                                  "when unset")
    group_id: str = "nurture-orchestrator"
    """Kafka consumer group of the scored-event consumer"""
    timer_poll_seconds: float = Field(default=0.5, gt=0)
    """how often due timers are looked for"""
    relay_idle_seconds: float = Field(default=0.2, gt=0)
    """how often the outbox relay looks for rows when nothing woke it"""
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    """on SIGTERM, how long the loops may finish their work"""
    public_url: str | None = Field(
        default=None, description="the URL the SMS provider calls us at (it signs that URL)")
    sms_auth_token: SecretStr | None = Field(
        default=None, description="the SMS provider's auth token: enables /v1/webhooks/sms")
    retention_days: float = Field(
        default=40.0, gt=0, description="keep processed-event marks this long (fractions of a "
        "day allowed). A mark dedupes a redelivered scored event, so it must outlive the "
        "record in Kafka: nurture.scored-events.v1 keeps records 30 days (retention.ms), and "
        "up to a segment longer (segment.ms, 7 days by default), so a group re-reading the "
        "topic from the start (offsets lost) would process again any record older than its "
        "mark. 40 = 30 + 7 + margin")
    prune_interval_seconds: float = Field(
        default=300.0, gt=0, description="how often marks past the retention are deleted")

    @field_validator("api_token", "admin_token", "enrollment_token", "sms_auth_token",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (an optional Secret with an empty key) is no token: never a
        token that an empty `Bearer ` would match."""
        return None if value == "" else value

    @field_validator("admin_token", "enrollment_token")
    @classmethod
    def _a_token_of_its_own(cls, value: SecretStr | None,
                            info: ValidationInfo) -> SecretStr | None:
        api = info.data.get("api_token")
        if value is not None and api is not None \
                and value.get_secret_value() == api.get_secret_value():
            raise ValueError("must differ from NURTURE_ORCHESTRATOR_API_TOKEN "
                             "(it guards more than reading)")
        return value
