"""Typed settings shared by every service, read from the environment (pydantic-settings).

Each service has its own settings class next to its code; `load()` turns a validation error into a
`ConfigError` that names the environment variable, so a bad value stops start-up with one clear
line instead of a traceback or a crash loop."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


class LogSettings(BaseSettings):
    """Logging: `NURTURE_LOG_LEVEL` (DEBUG..ERROR), `NURTURE_LOG_FORMAT` (json | text) and
    `NURTURE_LOG_HASH_KEY` (optional, the same in every service: keys the `lead_hash` of log
    lines with HMAC-SHA256)."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_LOG_", extra="ignore")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
    hash_key: SecretStr | None = None


class KafkaSettings(BaseSettings):
    """How to reach Kafka. `KAFKA_BOOTSTRAP_SERVERS` plus optional TLS/SASL, and the topic prefix
    (`NURTURE_TOPIC_PREFIX`) that lets several environments share one cluster."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        validation_alias=AliasChoices("NURTURE_TOPIC_PREFIX"),
    )


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that feeds `field` of settings class `cls`."""
    info = cls.model_fields.get(field)
    if info is None:  # pydantic reports aliased fields by their alias, which is the env name
        return field.upper()
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices) and alias.choices:
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def load(cls: type[S]) -> S:
    """Build settings from the environment or raise ConfigError naming every bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            lines.append(f"{env_name(cls, field)}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
