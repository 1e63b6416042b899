"""The CloudEvents 1.0 envelope as a pydantic model (mirrors cloudevent.schema.json)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, StringConstraints, model_validator

from schemas.formats import EXTENSION_NAME, NO_CONTROL_CHARS, is_uri_reference
from schemas.models.base import EventTime, NullRejecting, check_format

_MAX_EXTENSION_LENGTH = 1024

ExtensionValue = str | int | float | bool
"""Extension attribute values are JSON strings, numbers or booleans."""


class CloudEvent(NullRejecting):
    """A validated CloudEvents 1.0 envelope (structured JSON mode).

    `id` + `source` identify the event, `subject` is the lead id, `time` the event time (None when
    upstream did not send it; ingest fills in the receipt time), `data` the raw payload (validate it
    with the model for `type`, see `parse_event`). Extension attributes are kept as extra fields,
    available via `extensions`.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="allow")

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    source: Annotated[
        str,
        StringConstraints(min_length=1, max_length=512),
        AfterValidator(check_format(is_uri_reference, "uri-reference")),
    ]
    type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    subject: Annotated[
        str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)
    ]
    time: EventTime | None = None
    datacontenttype: Literal["application/json"] | None = None
    dataschema: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _check_extensions(self) -> CloudEvent:
        for name, value in self.extensions.items():
            if not re.fullmatch(EXTENSION_NAME, name):
                raise ValueError(
                    f"{name!r} is not a CloudEvents attribute; extension attribute names must be "
                    "1-20 lowercase letters or digits"
                )
            if not isinstance(value, ExtensionValue) or (
                isinstance(value, str) and len(value) > _MAX_EXTENSION_LENGTH
            ):
                raise ValueError(
                    f"extension attribute {name!r} must be a string of at most "
                    f"{_MAX_EXTENSION_LENGTH} characters, a number or a boolean"
                )
        return self

    @property
    def extensions(self) -> dict[str, Any]:
        """Extension attributes (top-level keys beyond the CloudEvents core attributes)."""
        return dict(self.model_extra or {})
