"""Standard Webhooks (standardwebhooks.com), defined once: dispatch signs the webhooks it sends
(`signed_headers`), ingest verifies the email provider's callbacks (`verify`).

A signed request carries `webhook-id` (the message id, stable across retries, so receivers
dedupe on it), `webhook-timestamp` (Unix seconds) and `webhook-signature`: one or more
space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (several during a key
rotation). The signature is computed by the standard's own library (`standardwebhooks`); the
secret's forms, the clock (passed in, so a test or a replay can set it) and the error messages
are ours. A secret is `whsec_<base64>` (the standard's form: the key is the decoded bytes) or
plain text (its UTF-8 bytes)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import SecretStr
from standardwebhooks import Webhook

PREFIX = "whsec_"
MIN_KEY_BYTES = 16
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A request whose signature headers are missing, stale or do not match; says which."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret; ValueError saying why when it cannot be one (a `whsec_`
    secret that is not base64, or a key shorter than `MIN_KEY_BYTES`)."""
    if secret.startswith(PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the secret starts with {PREFIX} but the rest is not base64"
                             ) from None
    else:
        key = secret.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the secret is too short (a key of at least {MIN_KEY_BYTES} bytes)")
    return key


def usable_secret(secret: SecretStr | None) -> SecretStr | None:
    """For a settings field: the secret as it is when it makes a key (`secret_key`), else the
    ValueError saying why, which the settings report under the variable's name."""
    if secret is not None:
        secret_key(secret.get_secret_value())
    return secret


def signature(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one `v1` signature."""
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def signed_headers(key: bytes, *, msg_id: str, now: datetime, body: bytes) -> dict[str, str]:
    """The headers of a JSON request signed as of `now`."""
    timestamp = int(now.timestamp())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, msg_id=msg_id, timestamp=timestamp, body=body),
            "Content-Type": "application/json"}


def verify(key: bytes, *, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The `webhook-id` of a request signed with `key` within `TOLERANCE_SECONDS` of `now`
    (Unix seconds); SignatureError saying what is wrong otherwise. Any of several signatures
    may match."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not (msg_id and stamp and given):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not (stamp.isascii() and stamp.isdigit()):
        raise SignatureError("webhook-timestamp is not Unix seconds")
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        raise SignatureError(f"webhook-timestamp is more than {TOLERANCE_SECONDS // 60} minutes "
                             "off the current time (a replay, or a wrong clock)")
    expected = signature(key, msg_id=msg_id, timestamp=int(stamp), body=body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in given.split()):
        raise SignatureError("webhook signature does not match")
    return msg_id
