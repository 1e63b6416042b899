"""What every record on an internal topic has in common: frozen, versioned, parsed from and
written to bytes in one place, with errors that name field paths and never values (a value may be
personal data, and errors end up in logs and dead letters)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer, ValidationError

from schemas.vocabulary import rfc3339


def _rfc3339(value: datetime) -> str:
    return rfc3339(value.timestamp())


Timestamp = Annotated[AwareDatetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]
"""A point in time in a record: any RFC 3339 date-time with an offset in, written as UTC with
milliseconds (`schemas.vocabulary.rfc3339`, the one event-time format)."""


class RecordError(ValueError):
    """A record value that is not the record its topic carries; consumers dead-letter it."""


def describe(exc: ValidationError, *, limit: int = 5) -> str:
    """`path: message; ...` for the first problems of a validation error, without input values
    (a validator's own message as it is, without pydantic's "Value error, " before it)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: "
        f"{error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors(include_input=False, include_url=False)[:limit])


class Record(BaseModel):
    """Base of the records Nurture's services exchange over Kafka.

    `version` is the record's schema version; a consumer reads every version it knows. Unknown
    fields are ignored, so a newer producer can add an optional field without breaking older
    consumers during a rolling upgrade."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TOPIC: ClassVar[str]
    """The logical topic (without the deployment's prefix) that carries this record."""

    version: Literal[1] = 1

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Self:
        """The record in a Kafka record value, or RecordError saying which fields are wrong."""
        if not raw:
            raise RecordError("empty record value")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            if first["type"] == "json_invalid":  # the words every consumer's dead letters use
                raise RecordError(
                    f"value is not JSON: {first['msg'].removeprefix('Invalid JSON: ')}") from None
            raise RecordError(f"not a {cls.__name__}: {describe(exc)}") from None

    def to_bytes(self) -> bytes:
        """The record value to produce (JSON, UTF-8)."""
        return self.model_dump_json().encode()
