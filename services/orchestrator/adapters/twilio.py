"""The SMS provider's side of inbound SMS (Twilio-compatible): requests are authenticated with
`X-Twilio-Signature`, base64 of HMAC-SHA1 over the public URL followed by every form field name
and value, sorted by name; the answer is TwiML."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    payload = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verified(auth_token: str, url: str, form: Mapping[str, str], given: str | None) -> bool:
    return given is not None and hmac.compare_digest(signature(auth_token, url, form), given)


def twiml(message: str | None = None) -> str:
    inner = f"<Message>{message}</Message>" if message else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'
