"""Provider callbacks mapped onto Nurture CloudEvents (pure: time and ids come in as arguments).

- the email provider's delivery, bounce and complaint events, signed the Standard Webhooks way
  (`services/common/webhooks.py`, as dispatch signs its own webhooks): `verify_signature`,
  `email_events`;
- CRM callbacks (the request carries an ingest API key): `crm_events`.

The routes are in `entrypoints/http/provider_webhooks.py`, the use cases in
`service_layer/handlers.py`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from schemas import validate_event
from schemas.cloudevent import new_event
from services.common import webhooks
from services.ingest.domain.auth import ApiKey, AuthError
from services.ingest.domain.intake import FieldProblem, Rejected, check_count

EMAIL_SOURCE = "nurture-ingest/email-webhook"
EMAIL_WEBHOOK_SETTING = "NURTURE_INGEST_EMAIL_WEBHOOK_SECRET"
MAX_DIAGNOSTIC = 1000  # the schema's limit; longer server text is cut, not refused
_MESSAGE = ("message_id", "program_id", "step_id", "template_id")
EMAIL_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {  # provider type -> (our type, data)
    "delivered": ("email.delivered", _MESSAGE),
    "bounced": ("email.bounced", (*_MESSAGE, "bounce_type", "diagnostic")),
    "complained": ("email.complained", _MESSAGE),
}
_DEAL = ("opportunity_id", "amount", "currency")
CRM_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "opportunity_opened": ("crm.opportunity_opened", (*_DEAL, "stage", "owner_id")),
    "deal_won": ("crm.deal_won", _DEAL),
    "deal_lost": ("crm.deal_lost", (*_DEAL, "reason")),
    "task_completed": ("crm.task_completed", ("task_id", "outcome")),
    "owner_assigned": ("crm.owner_assigned", ("owner_id",)),
}
# the signature stands in for an API key: this one may only send what the mapping produces
EMAIL_KEY = ApiKey("email-webhook", "", (EMAIL_SOURCE,),
                   tuple(etype for etype, _ in EMAIL_TYPES.values()))
_ENVELOPE_PATHS = {"subject": "lead_id", "time": "timestamp", "id": "id", "type": "type"}

def verify_signature(key: bytes, *, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The `webhook-id` of a correctly signed, fresh request (Standard Webhooks); AuthError(401)
    saying what is wrong otherwise."""
    try:
        return webhooks.verify(key, headers=headers, body=body, now=now)
    except webhooks.SignatureError as exc:
        raise AuthError(401, str(exc)) from None


def _translate(path: str) -> str:
    if path.startswith("data."):
        return path[5:]
    return _ENVELOPE_PATHS.get(path, path)


def map_items(doc: Any, types: Mapping[str, tuple[str, tuple[str, ...]]], *, source: str,
              event_id: Callable[[int, dict[str, Any]], Any],
              max_events: int) -> list[dict[str, Any]]:
    """CloudEvents for a webhook body (one item or an array of them), or Rejected(422) listing
    every problem as `{index, path, message}` with the paths of the provider's items."""
    if not isinstance(doc, list | dict):
        raise Rejected(400, "body must be a JSON object (one event) or array of them")
    items = doc if isinstance(doc, list) else [doc]
    check_count(len(items), max_events)
    events: list[dict[str, Any]] = []
    problems: list[FieldProblem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(FieldProblem(index, "", "each event must be an object"))
            continue
        if not isinstance(item.get("type"), str) or item["type"] not in types:
            problems.append(FieldProblem(index, "type", f"unsupported type {item.get('type')!r}; "
                                                        f"supported: {', '.join(types)}"))
            continue
        etype, fields = types[item["type"]]
        data = {f: item[f] for f in fields if item.get(f) is not None}
        stamp: Any = item.get("timestamp")
        lead: Any = item.get("lead_id")  # either may be missing or wrong: validation refuses it
        event = new_event(id=event_id(index, item), source=source, type=etype,
                          subject=lead, data=data, datacontenttype=None,
                          time=stamp if isinstance(stamp, str) else None)
        if stamp is not None and not isinstance(stamp, str):
            event["time"] = stamp  # kept as sent, so validation refuses it by its name
        event = {k: v for k, v in event.items() if v is not None}
        problems += [FieldProblem(index, _translate(p.path), p.message)
                     for p in validate_event(event)]
        events.append(event)
    if problems:
        raise Rejected(422, f"{len({p.index for p in problems})} of {len(items)} events are "
                            "invalid; nothing was accepted", problems)
    return events


def email_events(doc: Any, *, webhook_id: str, max_events: int) -> list[dict[str, Any]]:
    """Events for an email-provider body. Ids derive from `webhook-id` and the item's index, so
    a provider's retry of the same webhook is the same events downstream."""
    for item in doc if isinstance(doc, list) else [doc]:
        diagnostic = item.get("diagnostic") if isinstance(item, dict) else None
        if isinstance(diagnostic, str) and len(diagnostic) > MAX_DIAGNOSTIC:
            item["diagnostic"] = diagnostic[:MAX_DIAGNOSTIC]

    def event_id(index: int, _item: dict[str, Any]) -> str:
        return "ewh_" + hashlib.sha256(f"{webhook_id}|{index}".encode()).hexdigest()[:32]

    return map_items(doc, EMAIL_TYPES, source=EMAIL_SOURCE, event_id=event_id,
                     max_events=max_events)


def crm_events(doc: Any, *, key_name: str, max_events: int) -> list[dict[str, Any]]:
    """Events for a CRM body: the CRM's event `id` is the event id, `crm-webhook:<key>` the
    source, so a CRM's retry is deduped downstream."""
    return map_items(doc, CRM_TYPES, source=f"crm-webhook:{key_name}",
                     event_id=lambda _index, item: item.get("id"), max_events=max_events)
