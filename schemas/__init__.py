"""Nurture's event contracts: JSON Schemas for upstream teams, validation and typed models.

- `validate_event(event)` checks a decoded JSON event against the CloudEvents envelope schema and
  the data schema of its `type`, returning short `Problem`s ([] when valid). Used by ingest.
- `parse_event(raw)` returns the frozen `CloudEvent` envelope and the typed data model
  (`DATA_MODELS[type]`). Used by the services to read events.
- `EVENT_TYPES` is every accepted `type`.

The schema files live next to this module (`cloudevent.schema.json`, `data/<type>.schema.json`);
see README.md.
"""

from schemas.models import DATA_MODELS, CloudEvent
from schemas.parsing import parse_event
from schemas.problems import Problem
from schemas.registry import EVENT_TYPES
from schemas.validation import validate_event

__all__ = ["DATA_MODELS", "EVENT_TYPES", "CloudEvent", "Problem", "parse_event", "validate_event"]
