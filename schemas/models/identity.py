"""Models for identity.* event data (mirror data/identity.*.schema.json)."""

from __future__ import annotations

from typing import Literal

from schemas.models.base import EventData, Identifier

LinkVia = Literal["identify", "alias", "form", "crm_merge", "api"]


class IdentityLinked(EventData):
    """identity.linked: the subject (an anonymous id, or a lead merged away) is `lead_id`."""

    lead_id: Identifier
    via: LinkVia | None = None
