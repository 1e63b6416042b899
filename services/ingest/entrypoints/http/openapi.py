"""OpenAPI documentation for the raw-body endpoints (bodies are validated against the JSON
Schemas in `schemas/`, not by FastAPI, so the spec is written out here)."""

from __future__ import annotations

from typing import Any

from schemas.cloudevent import new_event

EXAMPLE_EVENT: dict[str, Any] = new_event(
    id="8f1c2a8e-0d7b-4a53-9d8c-3a1f5b2e7c11", source="https://www.example.com",
    type="web.page_viewed", subject="lead-42", time="2026-11-24T09:30:00Z",
    data={"url": "https://www.example.com/pricing", "title": "Pricing"}, datacontenttype=None)

_EVENT = {"type": "object", "description": "A CloudEvent: see schemas/cloudevent.schema.json "
          "and schemas/data/<type>.schema.json", "example": EXAMPLE_EVENT}
_BATCH = {"type": "array", "items": _EVENT, "maxItems": 500, "example": [EXAMPLE_EVENT]}

EVENTS_BODY: dict[str, Any] = {"requestBody": {"required": True, "description": (
    "One CloudEvent or a batch in structured mode; or one event in the HTTP binding's binary "
    "mode: its attributes as `ce-specversion`, `ce-id`, `ce-source`, `ce-type`, `ce-subject` "
    "(and optional `ce-time`, `ce-*`) headers, percent-encoded, and its data as a JSON body "
    "(`Content-Type: application/json`)."), "content": {
    "application/cloudevents+json": {"schema": _EVENT},
    "application/cloudevents-batch+json": {"schema": _BATCH},
    "application/json": {"schema": {"oneOf": [_EVENT, _BATCH]}},
}}}

BATCH_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["batch"],
        # items are not constrained here: each call is checked on its own, and the ones that
        # are not usable are listed in `rejected` of a 200 (Segment SDKs drop a batch on 4xx)
        "properties": {"batch": {"type": "array", "items": {}}},
        "example": {"batch": [{
            "type": "track", "event": "Demo Requested", "userId": "lead-42",
            "messageId": "a1b2c3", "timestamp": "2026-11-24T09:30:00Z",
            "properties": {"url": "https://www.example.com/demo"}}]},
    }},
}}}

def _webhook_body(types: list[str], example: dict[str, Any]) -> dict[str, Any]:
    item = {"type": "object", "required": ["type", "lead_id", "timestamp"], "properties": {
        "type": {"enum": types}, "lead_id": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"}}, "example": example}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [item, {"type": "array", "items": item, "maxItems": 500}]}}}}}


EMAIL_WEBHOOK_BODY = _webhook_body(
    ["delivered", "bounced", "complained"],
    {"type": "bounced", "message_id": "msg_2b7e1516", "lead_id": "lead-42",
     "timestamp": "2026-11-24T09:30:00Z", "bounce_type": "hard"})
CRM_WEBHOOK_BODY = _webhook_body(
    ["opportunity_opened", "deal_won", "deal_lost", "task_completed", "owner_assigned"],
    {"type": "deal_won", "id": "crm-evt-1", "lead_id": "lead-42",
     "timestamp": "2026-11-24T09:30:00Z", "opportunity_id": "opp_1001"})

_ERROR = {"application/json": {"schema": {"type": "object", "properties": {
    "detail": {"type": "string"},
    "errors": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer"}, "path": {"type": "string"},
        "message": {"type": "string"}}}},
}}}}

RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body is not JSON / empty / wrong shape", "content": _ERROR},
    401: {"description": "Missing or unknown API key", "content": _ERROR},
    403: {"description": "The key may not send this event source", "content": _ERROR},
    413: {"description": "Over 1 MiB or 500 events", "content": _ERROR},
    415: {"description": "Unsupported content type", "content": _ERROR},
    422: {"description": "Invalid events: every problem as {index, path, message}",
          "content": _ERROR},
    429: {"description": "The API key's rate limit is reached; nothing accepted; see Retry-After",
          "content": _ERROR, "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    503: {"description": "Kafka unavailable; nothing accepted; see Retry-After",
          "content": _ERROR},
}
