"""The links between ids that an accepted event implies (pure; docs/identity.md).

An event that names two ids of one person makes ingest publish an `identity.linked` next to
it, keyed by the id that is folded into the other:
- a call carrying both `userId` and `anonymousId` (Segment's and analytics.js's calls after
  `identify`; the mapped event has the `anonymousid` extension attribute): anonymous → user;
- a form submission or page view whose `data.anonymous_id` is not its subject: that id → the
  subject;
- `crm.leads_merged`: loser → winner.
(An `alias` call maps to `identity.linked` itself, `segment.py`.) Only a key that may send
`identity.linked` makes links. A link's id is derived from
its event's, so a retried event is the same link; scoring merges a pair once however often the
link comes (`services/scoring/service_layer/handlers.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.cloudevent import new_event
from schemas.vocabulary import LINKED_EVENT, PAGE_LINKS

MERGE_EVENT = "crm.leads_merged"
ANONYMOUS_ATTRIBUTE = "anonymousid"


def links_of(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `identity.linked` events `event` implies (none for most)."""
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    subject = event["subject"]
    if event["type"] == MERGE_EVENT:
        pair = (data["loser_id"], data["winner_id"], "crm_merge")
    else:
        other = event.get(ANONYMOUS_ATTRIBUTE) or data.get("anonymous_id")
        if not isinstance(other, str) or other in ("", subject):
            return []
        pair = (other, subject, "form" if event["type"] == "web.form_submitted" else "identify")
    absorbed, lead_id, via = pair
    return [new_event(id=f"{event['id']}.link", source=event["source"], type=LINKED_EVENT,
                      subject=absorbed, time=event.get("time"),
                      data={"lead_id": lead_id, "via": via})]


def link_problems(events: Sequence[Mapping[str, Any]], *,
                  browser: bool) -> list[tuple[int, str, str]]:
    """(index, field path, why) of each event that links an id to itself, or, from a browser
    key, links other than a page's (`PAGE_LINKS`: a page may fold only its visitor)."""
    problems = []
    for index, event in enumerate(events):
        data = event.get("data") or {}
        if event["type"] == MERGE_EVENT and data.get("winner_id") == data.get("loser_id"):
            problems.append((index, "data.loser_id",
                             "is the winner; a lead cannot be merged into itself"))
        elif event["type"] == LINKED_EVENT and data.get("lead_id") == event["subject"]:
            problems.append((index, "data.lead_id",
                             "is the event's subject; an id cannot be linked to itself"))
        elif event["type"] == LINKED_EVENT and browser and data.get("via") not in PAGE_LINKS:
            problems.append((index, "data.via", "a browser key's links are a page's: via "
                                                "identify, alias or form"))
    return problems
