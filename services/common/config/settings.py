"""Typed settings shared by every service, read from the environment (pydantic-settings).

Each service has its own settings class next to its code; `load()` turns a validation error into a
`ConfigError` that names the environment variable, so a bad value stops start-up with one clear
line instead of a traceback or a crash loop."""

from __future__ import annotations

import textwrap
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import ConfigError

S = TypeVar("S", bound=BaseSettings)


class LogSettings(BaseSettings):
    """Logging: `NURTURE_LOG_LEVEL` (DEBUG..ERROR), `NURTURE_LOG_FORMAT` (json | text) and
    `NURTURE_LOG_HASH_KEY` (optional, the same in every service: keys the `lead_hash` of log
    lines with HMAC-SHA256)."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_LOG_", extra="ignore",
                                      use_attribute_docstrings=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """log level: DEBUG, INFO, WARNING or ERROR"""
    format: Literal["json", "text"] = "json"
    """json (one object per line) or text"""
    hash_key: SecretStr | None = None
    """keys the `lead_hash` of log lines with HMAC-SHA256; the same in every service"""


class ClockSettings(BaseSettings):
    """The shared clock, for local and demo runs where the orchestrator's clock is moved
    (`POST /v1/admin/clock/advance`): `NURTURE_CLOCK_URL` makes ingest and dispatch follow it, so
    that the times they stamp (an event without `time`, an email's `message.sent`) agree with
    the orchestrator's. Unset (production): the wall clock."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_CLOCK_", extra="ignore",
                                      use_attribute_docstrings=True)

    url: str | None = Field(default=None, pattern=r"^https?://")
    """the orchestrator's clock (its `GET /v1/admin/clock`) to follow; unset: the wall clock"""
    token: SecretStr | None = None
    """the orchestrator's admin token, for that endpoint"""
    refresh_seconds: float = Field(default=1.0, gt=0, le=60)
    """how often the offset is read again (a clock step shows within this time)"""


class KafkaSettings(BaseSettings):
    """How to reach Kafka. `KAFKA_BOOTSTRAP_SERVERS` plus optional TLS/SASL, and the topic prefix
    (`NURTURE_TOPIC_PREFIX`) that lets several environments share one cluster."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore",
                                      use_attribute_docstrings=True)

    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    """Kafka brokers, host:port, comma-separated"""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)"""
    sasl_username: str | None = None
    """SASL user name"""
    sasl_password: SecretStr | None = None
    """SASL password"""
    ssl_cafile: str | None = None
    """CA bundle that signs the brokers' certificates (default: the system's)"""
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]*$",
        validation_alias=AliasChoices("NURTURE_TOPIC_PREFIX"),
    )
    """prefix of every topic name, so several environments can share a cluster"""


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


def environment_help(title: str, *classes: type[BaseSettings]) -> str:
    """A command's `--help` epilog: every environment variable the settings `classes` read,
    with its default and description, generated from the classes so it cannot drift."""
    lines = [f"{title}:"]
    for cls in classes:
        for field, info in cls.model_fields.items():
            name = f"  {env_name(cls, field)}"
            text = f"({_default(info)}) {info.description or ''}".rstrip()
            wrapped = textwrap.wrap(text, HELP_WIDTH - HELP_COLUMN, break_on_hyphens=False) \
                or [""]
            if len(name) >= HELP_COLUMN:  # a long name: its text on the lines below
                lines.append(name)
                name = ""
            lines.append(f"{name:<{HELP_COLUMN}}{wrapped[0]}")
            lines += [" " * HELP_COLUMN + more for more in wrapped[1:]]
    return "\n".join(lines) + "\n"


HELP_WIDTH, HELP_COLUMN = 100, 44


def _default(info: FieldInfo) -> str:
    """How a setting's default reads in `--help`."""
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "none"
    return str(value) if value != "" else "empty"
