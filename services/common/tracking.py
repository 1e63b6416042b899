"""Signed, expiring tokens for the links in sent messages: the open pixel, click redirects and
one-click unsubscribe. Dispatch signs (`sign`); ingest's public endpoints verify (`verify`).

A token is `<payload>.<signature>`, both base64url without padding: the payload is compact JSON
`{"message_id", "lead_id", "program_id", "step_id", "kind", "url"?, "exp"}` (`exp` in Unix
seconds), the signature HMAC-SHA256 over `nurture-tracking.v1.` + the payload part. Tokens are
authenticated, not encrypted: they carry ids only, never an email address or a name.

Keys rotate without breaking links already sent: `verify` accepts several keys (the current one
first) and the signer always uses the first. The shared secret is `NURTURE_TRACKING_SECRET`
(`TrackingSettings`); ingest and dispatch must be given the same value.

The paths below are the contract between the two services (`tracking_path`):

    GET  /t/open/{token}          1x1 pixel, records email.opened
    GET  /t/click/{token}         records email.clicked, redirects to the signed `url` only
    GET|POST /t/unsubscribe/{token}   page / RFC 8058 one-click, records email.unsubscribed
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import orjson
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Kind = Literal["open", "click", "unsubscribe"]
KINDS: tuple[str, ...] = get_args(Kind)
_CONTEXT = b"nurture-tracking.v1."
MAX_TOKEN_CHARS = 4096
MIN_KEY_BYTES = 16
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """A tracking token that must not be trusted. The message is safe to log (no token data)."""


class MalformedToken(TokenError):
    """Not a token at all: wrong shape, bad base64 or JSON, missing or mistyped fields."""


class BadSignature(TokenError):
    """The signature does not match any key: forged, tampered with, or signed with a retired key."""


class TokenExpired(TokenError):
    """Authentic, but past its `exp`."""


class WrongKind(TokenError):
    """Authentic, but minted for another endpoint (a pixel token used as a click token)."""


@dataclass(frozen=True, slots=True)
class TrackingClaims:
    """What a token asserts. `url` is the click destination (click tokens only); `exp` is Unix
    seconds."""

    message_id: str
    lead_id: str
    program_id: str
    step_id: str
    kind: Kind
    exp: int
    url: str | None = None


class TrackingSettings(BaseSettings):
    """The signing secret shared by dispatch (signs) and ingest (verifies):
    `NURTURE_TRACKING_SECRET`, at least 16 bytes; `NURTURE_TRACKING_PREVIOUS_SECRETS`, a
    comma-separated list of retired secrets still accepted while old links are live."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_TRACKING_", extra="ignore",
                                      use_attribute_docstrings=True)

    secret: SecretStr | None = Field(default=None, min_length=MIN_KEY_BYTES)
    """signs tracking and unsubscribe links (dispatch) and verifies them (ingest): the same in
    both; unset, dispatch signs with a random key (links will not verify) and ingest's /t/
    endpoints are off"""
    previous_secrets: SecretStr | None = None
    """retired secrets, comma-separated, still accepted while their links live"""

    def keys(self) -> list[bytes]:
        """The verification keys, current first ([] when no secret is set)."""
        if self.secret is None:
            return []
        old = self.previous_secrets.get_secret_value() if self.previous_secrets else ""
        return [self.secret.get_secret_value().encode()] + [
            s.strip().encode() for s in old.split(",") if s.strip()]


def sign(claims: TrackingClaims, *, key: bytes) -> str:
    """The token for `claims`, signed with `key`."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"tracking key must be at least {MIN_KEY_BYTES} bytes")
    if claims.kind not in KINDS:
        raise ValueError(f"unknown token kind {claims.kind!r}")
    if (claims.kind == "click") != (claims.url is not None):
        raise ValueError("a click token needs a url, and only a click token has one")
    body: dict[str, Any] = {"message_id": claims.message_id, "lead_id": claims.lead_id,
                            "program_id": claims.program_id, "step_id": claims.step_id,
                            "kind": claims.kind, "exp": claims.exp}
    if claims.url is not None:
        body["url"] = claims.url
    payload = _b64encode(orjson.dumps(body))
    return f"{payload}.{_b64encode(_mac(key, payload))}"


def verify(token: str, *, keys: Sequence[bytes], now: float,
           kind: Kind | None = None) -> TrackingClaims:
    """The claims of an authentic, unexpired token (of `kind`, when given).

    Raises MalformedToken, BadSignature, TokenExpired or WrongKind (all TokenError). The signature
    is checked, in constant time, before anything of the payload is looked at."""
    if not keys:
        raise ValueError("verify needs at least one key")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS \
            or _SHAPE.fullmatch(token) is None:
        raise MalformedToken("not a tracking token")
    payload, signature = token.split(".")
    # the encoded signature is compared as text: a non-canonical base64 spelling of the right
    # bytes is refused, so a token has exactly one valid form. Every key is tried (no early
    # exit), so timing does not tell which key matched.
    given = signature.encode("ascii")
    matched = [hmac.compare_digest(_b64encode(_mac(key, payload)).encode("ascii"), given)
               for key in keys]
    if not any(matched):
        raise BadSignature("tracking token signature does not match")
    claims = _claims(_b64decode(payload))
    if math.floor(now) >= claims.exp:
        raise TokenExpired("tracking token has expired")
    if kind is not None and claims.kind != kind:
        raise WrongKind(f"tracking token is for '{claims.kind}', not '{kind}'")
    return claims


def tracking_path(kind: Kind, token: str) -> str:
    """The path (on ingest's public base URL) of the endpoint for a token of `kind`."""
    return f"/t/{kind}/{token}"


def tracking_url(base_url: str, claims: TrackingClaims, *, key: bytes) -> str:
    """The link for `claims` on ingest's public `base_url`: the endpoint of its kind, with the
    token signed by `key`."""
    return base_url.rstrip("/") + tracking_path(claims.kind, sign(claims, key=key))


def _claims(raw: bytes) -> TrackingClaims:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedToken("tracking token payload is not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedToken("tracking token payload is not an object")
    texts = ("message_id", "lead_id", "program_id", "step_id", "kind")
    if any(not isinstance(doc.get(name), str) for name in texts) or doc["kind"] not in KINDS:
        raise MalformedToken("tracking token payload lacks its ids or kind")
    exp, url = doc.get("exp"), doc.get("url")
    if not isinstance(exp, int) or isinstance(exp, bool) or not isinstance(url, str | None):
        raise MalformedToken("tracking token payload has a bad exp or url")
    return TrackingClaims(doc["message_id"], doc["lead_id"], doc["program_id"], doc["step_id"],
                          doc["kind"], exp, url)


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise MalformedToken("tracking token is not base64url") from None
