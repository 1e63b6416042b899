"""Tracking tokens: what dispatch signs, ingest verifies; forged, altered, expired or misused
tokens are refused with the matching exception."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.tracking import (
    BadSignature,
    MalformedToken,
    TokenError,
    TokenExpired,
    TrackingClaims,
    TrackingSettings,
    WrongKind,
    sign,
    tracking_path,
    verify,
)

KEY = b"k" * 32
OTHER = b"o" * 32
NOW = 1_800_000_000
CLICK = TrackingClaims("m1", "lead-1", "welcome", "email-1", "click", NOW + 60,
                       "https://www.example.com/pricing?plan=pro&x=1")


def test_a_signed_token_verifies_to_the_same_claims() -> None:
    token = sign(CLICK, key=KEY)
    assert verify(token, keys=[KEY], now=NOW, kind="click") == CLICK
    assert verify(token, keys=[KEY], now=NOW) == CLICK


def test_the_payload_is_compact_json_of_ids_only() -> None:
    payload = sign(CLICK, key=KEY).split(".")[0]
    doc = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert doc == {"message_id": "m1", "lead_id": "lead-1", "program_id": "welcome",
                   "step_id": "email-1", "kind": "click", "exp": NOW + 60,
                   "url": "https://www.example.com/pricing?plan=pro&x=1"}


def test_a_token_is_url_safe() -> None:
    token = sign(CLICK, key=KEY)
    assert all(c.isalnum() or c in "-_." for c in token)
    assert tracking_path("click", token) == f"/t/click/{token}"


def test_expired_at_exp() -> None:
    token = sign(CLICK, key=KEY)
    verify(token, keys=[KEY], now=NOW + 59.9)
    with pytest.raises(TokenExpired):
        verify(token, keys=[KEY], now=NOW + 60)


def test_another_key_is_a_bad_signature() -> None:
    with pytest.raises(BadSignature):
        verify(sign(CLICK, key=OTHER), keys=[KEY], now=NOW)


def test_rotated_keys_keep_old_links_working() -> None:
    old = sign(CLICK, key=OTHER)
    assert verify(old, keys=[KEY, OTHER], now=NOW) == CLICK


def test_a_changed_payload_is_a_bad_signature() -> None:
    payload, signature = sign(CLICK, key=KEY).split(".")
    evil = dict(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))),
                url="https://evil.example/")
    forged = base64.urlsafe_b64encode(orjson.dumps(evil)).rstrip(b"=").decode()
    with pytest.raises(BadSignature):
        verify(f"{forged}.{signature}", keys=[KEY], now=NOW)


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    token = bytearray(sign(CLICK, key=KEY).encode())
    index = position % len(token)
    token[index] ^= 1 << bit
    with pytest.raises(TokenError):
        verify(token.decode("latin-1"), keys=[KEY], now=NOW)


def test_a_token_for_another_endpoint_is_refused() -> None:
    pixel = TrackingClaims("m1", "lead-1", "welcome", "email-1", "open", NOW + 60)
    with pytest.raises(WrongKind, match="'open', not 'unsubscribe'"):
        verify(sign(pixel, key=KEY), keys=[KEY], now=NOW, kind="unsubscribe")


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a b.c", "é.x", "x" * 5000 + ".y",
                                   "!!!.???"])
def test_garbage_is_malformed(token: str) -> None:
    with pytest.raises(MalformedToken):
        verify(token, keys=[KEY], now=NOW)


def test_a_signed_payload_that_is_not_claims_is_malformed() -> None:
    # someone holding the key could still mint nonsense; verify must not crash on it
    import hashlib
    import hmac

    payload = base64.urlsafe_b64encode(b'{"kind": "open"}').rstrip(b"=").decode()
    mac = hmac.new(KEY, b"nurture-tracking.v1." + payload.encode(), hashlib.sha256).digest()
    token = f"{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(MalformedToken):
        verify(token, keys=[KEY], now=NOW)


def test_signing_refuses_inconsistent_claims_and_short_keys() -> None:
    with pytest.raises(ValueError, match="url"):
        sign(TrackingClaims("m", "l", "p", "s", "open", NOW, url="https://x"), key=KEY)
    with pytest.raises(ValueError, match="url"):
        sign(TrackingClaims("m", "l", "p", "s", "click", NOW), key=KEY)
    with pytest.raises(ValueError, match="16 bytes"):
        sign(CLICK, key=b"short")


def test_settings_list_the_current_key_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_TRACKING_SECRET", "current-secret-0123456789")
    monkeypatch.setenv("NURTURE_TRACKING_PREVIOUS_SECRETS", "old-secret-0123456789, older-1")
    assert TrackingSettings().keys() == [b"current-secret-0123456789",
                                         b"old-secret-0123456789", b"older-1"]
    monkeypatch.delenv("NURTURE_TRACKING_SECRET")
    assert TrackingSettings().keys() == []


def test_a_non_canonical_spelling_of_the_signature_is_refused() -> None:
    # the last base64 character of a 32-byte MAC carries 2 unused bits; changing them decodes
    # to the same bytes, but must not make a second valid token
    payload, signature = sign(CLICK, key=KEY).split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    twin = signature[:-1] + alphabet[last ^ 1]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(signature + "=")
    with pytest.raises(BadSignature):
        verify(f"{payload}.{twin}", keys=[KEY], now=NOW)
