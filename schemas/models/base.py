"""Base classes and field types shared by the pydantic event models.

Each type mirrors a definition in `data/_common.schema.json`; the constraints must stay identical
(tests/schemas/test_contracts.py checks that both sides accept and reject the same documents).
Models are strict, so JSON types are not coerced ("5" is not an int), matching JSON Schema.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic import StringConstraints as S

from schemas.formats import (
    COUNTRY_ALPHA2,
    CURRENCY_ISO4217,
    FORMAT_MESSAGES,
    NO_CONTROL_CHARS,
    PHONE_E164,
    TIMEZONE_NAME,
    is_email,
    is_iana_timezone,
    parse_date,
    parse_rfc3339,
)


class NullRejecting(BaseModel):
    """Rejects an explicit JSON `null` for a declared field, as the JSON Schemas do.

    Optional fields default to None when left out; sending `"title": null` is an error on both
    sides (undeclared extra properties may still be null where extras are allowed).
    """

    @model_validator(mode="before")
    @classmethod
    def _reject_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(name for name in cls.model_fields if name in data and data[name] is None)
            if nulls:
                raise ValueError(f"must not be null: {', '.join(nulls)}")
        return data


class EventData(NullRejecting):
    """Base of every `data` model: frozen, strict (no coercion), unknown properties rejected."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class OpenEventData(EventData):
    """A `data` model whose schema allows extra properties; they are kept in `model_extra`."""

    model_config = ConfigDict(extra="allow")


def _integral_to_int(value: object) -> object:
    # JSON Schema's "integer" includes 3.0; strict pydantic would reject the float.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_format(check: Callable[[str], bool], format_name: str) -> Callable[[str], str]:
    """A pydantic after-validator raising the JSON Schema format message when `check` fails."""

    def validate(value: str) -> str:
        if not check(value):
            raise ValueError(FORMAT_MESSAGES[format_name])
        return value

    return validate


def _to_datetime(value: object) -> object:
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(FORMAT_MESSAGES["date-time"])
    return value


def _to_date(value: object) -> object:
    return parse_date(value) if isinstance(value, str) else value


JsonInt = Annotated[int, BeforeValidator(_integral_to_int)]
PositiveInt = Annotated[JsonInt, Field(ge=1)]
NonNegativeInt = Annotated[JsonInt, Field(ge=0)]
Identifier = Annotated[str, S(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)]
Url = Annotated[str, S(min_length=1, max_length=2048)]
Text = Annotated[str, S(max_length=500)]
Topic = Annotated[str, S(min_length=1, max_length=100)]
ContentTopics = Annotated[list[Topic], Field(max_length=50)]
ContentStage = Literal["awareness", "consideration", "decision"]
Email = Annotated[str, S(max_length=254), AfterValidator(check_format(is_email, "email"))]
Phone = Annotated[str, S(pattern=PHONE_E164)]
Country = Annotated[str, S(pattern=COUNTRY_ALPHA2)]
Currency = Annotated[str, S(pattern=CURRENCY_ISO4217)]
Timezone = Annotated[
    str,
    S(max_length=64, pattern=TIMEZONE_NAME),
    AfterValidator(check_format(is_iana_timezone, "iana-timezone")),
]
Amount = Annotated[float, Field(ge=0, le=10**15)]
ConsentStatus = Literal["granted", "denied", "unknown"]
Keyword = Annotated[str, S(min_length=1, max_length=50)]
EventTime = Annotated[datetime, BeforeValidator(_to_datetime)]
"""An aware datetime; from JSON, an RFC 3339 date-time with offset (same check as JSON Schema)."""
Date = Annotated[date, BeforeValidator(_to_date)]


class Utm(OpenEventData):
    """UTM campaign parameters of a visit (other campaign keys are kept)."""

    source: Text | None = None
    medium: Text | None = None
    campaign: Text | None = None
    term: Text | None = None
    content: Text | None = None


class EmailMessageRef(OpenEventData):
    """Common fields of email.* events: which Nurture message the event is about."""

    message_id: Identifier
    program_id: Identifier | None = None
    step_id: Identifier | None = None
    template_id: Identifier | None = None
