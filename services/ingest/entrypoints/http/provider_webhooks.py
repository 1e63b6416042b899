"""Provider callbacks: `POST /v1/webhooks/email` (Standard Webhooks signature) and
`POST /v1/webhooks/crm` (an ingest API key). All-or-nothing per request; 2xx only once Kafka
acknowledged, 503 + Retry-After if not."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.entrypoints.http.dependencies import AdmittedKey, Body, HandlersDep
from services.ingest.entrypoints.http.openapi import (
    CRM_WEBHOOK_BODY,
    EMAIL_WEBHOOK_BODY,
    RESPONSES,
)

router = APIRouter()


def email_webhook_on(service: HandlersDep) -> None:
    """404 (before the body is read) while the email webhook has no secret."""
    service.email_webhook_on()


@router.post("/v1/webhooks/email", status_code=200, responses=RESPONSES,
             openapi_extra=EMAIL_WEBHOOK_BODY, dependencies=[Depends(email_webhook_on)],
             summary="Email provider events (Standard Webhooks signature)")
async def email_webhook(request: Request, body: Body, service: HandlersDep) -> Response:
    """Delivery, bounce and complaint callbacks of the email provider, signed the Standard
    Webhooks way with `NURTURE_INGEST_EMAIL_WEBHOOK_SECRET` (`webhook-id`,
    `webhook-timestamp` within 5 minutes, `webhook-signature: v1,<base64 HMAC-SHA256>`).

    Body: one object or an array of `{"type": "delivered" | "bounced" | "complained",
    "message_id", "lead_id", "timestamp" (RFC 3339), "bounce_type"?: "hard" | "soft",
    "diagnostic"?, "program_id"?, "step_id"?, "template_id"?}` → `email.delivered`,
    `email.bounced`, `email.complained` (source `nurture-ingest/email-webhook`, id derived
    from `webhook-id` + position, so a retry is deduped). 200 `{"accepted": n}` once Kafka
    has them all; 401 bad/missing/stale signature; 404 when the secret is not set; 422
    invalid items as `{index, path, message}`; 503 + Retry-After when Kafka is down."""
    accepted = await service.accept_email_webhook(body, request.headers)
    return JSONResponse({"accepted": accepted.count})


@router.post("/v1/webhooks/crm", status_code=200, responses=RESPONSES,
             openapi_extra=CRM_WEBHOOK_BODY,
             summary="CRM callbacks (ingest API key)")
async def crm_webhook(key: AdmittedKey, body: Body, service: HandlersDep) -> Response:
    """CRM callbacks, authenticated with an ingest API key (`Authorization: Bearer <key>`)
    whose sources allow `crm-webhook:<key name>` and types allow `crm.*`.

    Body: one object or an array of `{"type": "opportunity_opened" | "deal_won" |
    "deal_lost" | "task_completed" | "owner_assigned", "lead_id", "id" (the CRM's event id),
    "timestamp" (RFC 3339), ...fields}` → `crm.<type>`; fields kept per type:
    `opportunity_id`, `amount`, `currency`, `stage`, `owner_id` (opportunity_opened);
    `opportunity_id`, `amount`, `currency` (+ `reason` for deal_lost); `task_id`, `outcome`;
    `owner_id`. 200 `{"accepted": n}` once Kafka has them all; 401 / 403 / 422 / 503 as on
    `/v1/events`."""
    accepted = await service.accept_crm_webhook(body, key)
    return JSONResponse({"accepted": accepted.count})
