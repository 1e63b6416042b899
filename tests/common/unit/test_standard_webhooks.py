"""Standard Webhooks, as dispatch signs and ingest verifies (`services/common/webhooks.py`):
the specification's own example, the secret's two forms, and what a verification refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from services.common.webhooks import (
    SignatureError,
    secret_key,
    signature,
    signed_headers,
    verify,
)

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = b"a-plain-text-secret-of-24"
BODY = b'{"type": "delivered"}'
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_the_signature_matches_the_specification_example() -> None:
    assert signature(secret_key(SPEC_SECRET), msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                     timestamp=1614265330, body=b'{"test": 2432232314}') \
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_plain_secret_is_its_text_and_a_whsec_secret_its_decoded_bytes() -> None:
    assert secret_key(KEY.decode()) == KEY
    assert secret_key("whsec_" + base64.b64encode(KEY).decode()) == KEY


@pytest.mark.parametrize(("secret", "reason"), [
    ("whsec_***", "not base64"),
    ("short-secret", "too short"),
    ("whsec_" + base64.b64encode(b"x" * 15).decode(), "too short"),
])
def test_an_unusable_secret_is_refused_saying_why(secret: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        secret_key(secret)


def test_signed_headers_verify_and_give_the_message_id() -> None:
    headers = signed_headers(KEY, msg_id="msg-1", now=NOW, body=BODY)
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    mac = hmac.new(KEY, f"msg-1.{int(NOW.timestamp())}.".encode() + BODY, hashlib.sha256)
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac.digest()).decode()
    assert verify(KEY, headers=headers, body=BODY, now=NOW.timestamp() + 299) == "msg-1"


def test_any_of_several_signatures_may_match_during_a_key_rotation() -> None:
    headers = signed_headers(KEY, msg_id="msg-1", now=NOW, body=BODY)
    old = signed_headers(b"the-previous-secret-000", msg_id="msg-1", now=NOW, body=BODY)
    headers["webhook-signature"] = f"{old['webhook-signature']} {headers['webhook-signature']}"
    assert verify(KEY, headers=headers, body=BODY, now=NOW.timestamp()) == "msg-1"


@pytest.mark.parametrize(("change", "reason"), [
    ({"webhook-id": ""}, "missing webhook-id"),
    ({"webhook-timestamp": "yesterday"}, "not Unix seconds"),
    ({"webhook-timestamp": str(int(NOW.timestamp()) - 301)}, "more than 5 minutes off"),
    ({"webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU="}, "does not match"),
    ({"webhook-id": "msg-2"}, "does not match"),  # signed for another message
])
def test_what_verification_refuses_is_named(change: dict[str, str], reason: str) -> None:
    headers = {**signed_headers(KEY, msg_id="msg-1", now=NOW, body=BODY), **change}
    with pytest.raises(SignatureError, match=reason):
        verify(KEY, headers=headers, body=BODY, now=NOW.timestamp())


def test_another_body_does_not_verify() -> None:
    headers = signed_headers(KEY, msg_id="msg-1", now=NOW, body=BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(KEY, headers=headers, body=BODY + b" ", now=NOW.timestamp())
