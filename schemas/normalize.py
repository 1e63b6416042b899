"""`normalized`: the fields every hop derives from an event before using it, defined once.

A page view (`web.page_viewed`) must carry its `url`; many publishers send nothing else. Where
they are absent, these are derived from the URL, so that scoring rules and program triggers
written on them work for URL-only publishers:

- `path`: the URL's path (`/` when it has none), e.g. `/pricing`;
- `search`: the query string with its `?` (Segment's page property), when the URL has one;
- `utm`: `utm_source`, `utm_medium`, `utm_campaign`, `utm_term` and `utm_content` from the query.

A field the publisher sent is never overwritten. Ingest applies this before it publishes, scoring
(its worker and `backtest`) and the orchestrator's `simulate` when they read an event, so events
that reached a topic or a file another way are treated alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PAGE_VIEWED = "web.page_viewed"
UTM_FIELDS = ("source", "medium", "campaign", "term", "content")
MAX_PATH = 2048  # data/web.page_viewed.schema.json: path
MAX_TEXT = 500  # data/_common.schema.json: text (each utm field)


def normalized(event: dict[str, Any]) -> dict[str, Any]:
    """`event` with its derived fields filled in; the same object when nothing is derived."""
    if event.get("type") != PAGE_VIEWED:
        return event
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
        return event
    derived = page_fields(data["url"], data)
    if not derived:
        return event
    return {**event, "data": {**data, **derived}}


def page_fields(url: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a page view that `data` lacks and `url` gives."""
    if "path" in data and "search" in data and "utm" in data:
        return {}
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: leave the event as it came
        return {}
    derived: dict[str, Any] = {}
    if "path" not in data:
        derived["path"] = (parts.path or "/")[:MAX_PATH]
    if "search" not in data and parts.query:
        derived["search"] = f"?{parts.query}"[:MAX_PATH]
    if "utm" not in data and "utm_" in parts.query:
        utm = {}
        for name, value in parse_qsl(parts.query):
            field = name.removeprefix("utm_")
            if name.startswith("utm_") and field in UTM_FIELDS and value and field not in utm:
                utm[field] = value[:MAX_TEXT]
        if utm:
            derived["utm"] = utm
    return derived
