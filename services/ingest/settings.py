"""ingest settings: environment variables with the `NURTURE_INGEST_` prefix (plus the shared
`KAFKA_*`, `NURTURE_TOPIC_PREFIX` and `NURTURE_LOG_*` ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    HttpUrl,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.webhooks import usable_secret
from services.ingest.domain.auth import BROWSER_TYPES


class ApiKeyConfig(BaseModel):
    """One API key as configured: never the key itself, only its SHA-256 (hex)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    sources: list[str] = Field(
        default=["*"], min_length=1,
        description="glob patterns of the CloudEvents `source` values this key may send",
    )
    types: list[str] = Field(
        default=["*"], min_length=1,
        description="glob patterns of the event types this key may send (default: all; for a "
                    "key with origins: web.*, crm.lead_upserted and identity.linked, what a "
                    "page's identify and alias send)",
    )
    origins: list[str] = Field(
        default=[], description="web origins (glob patterns, e.g. https://www.example.com) "
                                "whose pages may use this key (CORS); none: server-side only")

    @model_validator(mode="after")
    def _browser_types(self) -> ApiKeyConfig:
        if self.origins and "types" not in self.model_fields_set:
            self.types = list(BROWSER_TYPES)
        return self


class IngestSettings(BaseSettings):
    """HTTP server, API keys, request limits and produce timeouts for the ingest service."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_INGEST_", extra="ignore",
                                      use_attribute_docstrings=True)

    host: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on all interfaces
    """listen address"""
    port: int = Field(default=8080, ge=1, le=65535)
    """listen port"""
    api_keys_file: Path | None = None
    """a JSON file with more keys, in the form of NURTURE_INGEST_API_KEYS (e.g. a mounted
    Kubernetes Secret); re-read when it changes, without a restart"""
    api_keys_reload_seconds: float = Field(default=5.0, gt=0)
    """how often the key file is looked at for a change"""
    api_keys: list[ApiKeyConfig] = Field(
        default_factory=list,
        description='JSON list: [{"name": "website", "sha256": "<hex>", "sources": ["*"]}]',
    )
    max_batch_events: int = Field(default=500, ge=1, le=10_000)
    """most events in one `POST /v1/events` batch (413 beyond); `POST /v1/batch` has Segment's
    limits instead: 32 KB per call, 500 KB per batch"""
    segment_dedupe_seconds: float = Field(default=600.0, ge=0, le=86_400)
    """a Segment call whose messageId this process published within this many seconds is
    answered as accepted and not published again (0 = off; consumers dedupe in any case)"""
    segment_client_ip: Literal["truncate", "drop", "keep"] = "truncate"
    """what `POST /v1/batch` keeps of a call's `context.ip` (the event's `clientip`): its
    network only (IPv4 /24, IPv6 /48), nothing, or the whole address (personal data: see
    docs/security.md)"""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=4 * 1024 * 1024)
    """largest request body, after gunzip (413 beyond)"""
    max_event_bytes: int = Field(default=256 * 1024, ge=1024, le=900 * 1024,
                                 description="one event, encoded (Kafka's record limit is ~1 MiB)")
    max_future_seconds: int = Field(default=300, ge=0,
                                    description="how far `time` may lie ahead of receipt")
    produce_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """how long a request waits for Kafka's acks before 503"""
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    """the Retry-After of a 503 while Kafka is unavailable"""
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    """on SIGTERM, how long requests in flight may finish"""
    rate_limit_per_second: float = Field(
        default=100.0, ge=0, le=1_000_000,
        description="requests per second each API key may make (token bucket refill; 0 = off)")
    rate_limit_burst: int = Field(
        default=500, ge=1, le=1_000_000,
        description="requests an idle API key may make at once (token bucket size)")
    public_url: HttpUrl | None = None
    """this ingest's address as web pages reach it (e.g. https://collect.example.com), for the
    analytics.js settings document; default: the address each request came to"""
    client_rate_limit_per_second: float = Field(default=20.0, ge=0, le=1_000_000)
    """requests per second one client address may make with a browser key (a key with
    origins), on top of the key's own limit (0 = off)"""
    client_rate_limit_burst: int = Field(default=100, ge=1, le=1_000_000)
    """requests an idle client address may make at once with a browser key"""
    email_webhook_secret: SecretStr | None = Field(
        default=None,
        description="verifies POST /v1/webhooks/email (Standard Webhooks: whsec_<base64> or "
                    "plain text); the endpoint answers 404 without it",
    )

    _usable_secret = field_validator("email_webhook_secret")(usable_secret)

    @field_validator("api_keys_file")
    @classmethod
    def _readable_key_file(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_key_file(path)  # fail at start, naming the file and what is wrong
        return path

    @field_validator("api_keys")
    @classmethod
    def _keys_present_and_unique(cls, keys: list[ApiKeyConfig],
                                 info: ValidationInfo) -> list[ApiKeyConfig]:
        path = info.data.get("api_keys_file")
        if not keys and path is None:
            raise ValueError("at least one API key is required (here or in "
                             "NURTURE_INGEST_API_KEYS_FILE); create one with "
                             "`nurture-ingest keygen --name NAME`")
        names = [k.name for k in [*keys, *(read_key_file(path) if path else [])]]
        if len(names) != len(set(names)):
            raise ValueError("API key names must be unique (here and in "
                             "NURTURE_INGEST_API_KEYS_FILE): " + ", ".join(
                                 sorted({n for n in names if names.count(n) > 1})))
        return keys


_KEY_LIST = TypeAdapter(list[ApiKeyConfig])


def read_key_file(path: Path) -> list[ApiKeyConfig]:
    """The key entries of a key file; ValueError saying which file and what is wrong."""
    try:
        return _KEY_LIST.validate_json(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the document)"
        raise ValueError(f"{path}: {where}: {first['msg']}") from None
