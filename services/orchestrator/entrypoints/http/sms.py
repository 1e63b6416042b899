"""/v1/webhooks/sms: inbound SMS from the provider (Twilio-compatible): STOP, START, HELP."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response

from services.orchestrator.adapters import twilio
from services.orchestrator.entrypoints.http.dependencies import Orch, errors

router = APIRouter()
PATH = "/v1/webhooks/sms"


@router.post(PATH, responses=errors(401, 404, 413) | {
    200: {"content": {"text/xml": {}}, "description": "TwiML"}},
    summary="Inbound SMS (Twilio-compatible): STOP, START, HELP")
async def sms_webhook(request: Request, orch: Orch) -> Response:
    """Signed with `X-Twilio-Signature` over NURTURE_ORCHESTRATOR_PUBLIC_URL; answers TwiML."""
    settings = orch.settings
    if settings.sms_auth_token is None or not settings.public_url:
        raise HTTPException(404, "inbound SMS is disabled (set NURTURE_ORCHESTRATOR_"
                                 "SMS_AUTH_TOKEN and NURTURE_ORCHESTRATOR_PUBLIC_URL)")
    # public until verified: BodyLimit (MAX_BODY_BYTES) stops a big body while it streams
    body = (await request.body()).decode(errors="replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    url = settings.public_url.rstrip("/") + PATH
    if not twilio.verified(settings.sms_auth_token.get_secret_value(), url, form,
                           request.headers.get("x-twilio-signature")):
        raise HTTPException(401, "missing or wrong X-Twilio-Signature")
    reply = await orch.handlers.inbound_sms(form)
    return Response(twilio.twiml(reply), media_type="text/xml")
