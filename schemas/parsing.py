"""`parse_event`: typed access to a CloudEvent and its data for the services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from schemas.models import DATA_MODELS, CloudEvent
from schemas.validation import unknown_type_problem


def parse_event(raw: Mapping[str, Any]) -> tuple[CloudEvent, BaseModel]:
    """Parse a CloudEvent (a decoded JSON object) into the envelope and its typed `data` model.

    The models accept exactly what `validate_event` accepts. Raises `pydantic.ValidationError`
    for an invalid envelope or data, and `ValueError` for an unknown `type` (ValidationError is a
    ValueError too, so consumers can dead-letter on ValueError).
    """
    event = CloudEvent.model_validate(dict(raw))
    model = DATA_MODELS.get(event.type)
    if model is None:
        raise ValueError(unknown_type_problem(event.type).message)
    return event, model.model_validate(event.data)
