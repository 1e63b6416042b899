"""API-key authentication (pure). Keys are random tokens; only their SHA-256 is configured.

Clients send `Authorization: Bearer <key>`, or HTTP Basic with the key as the user name (what
Segment / RudderStack SDKs send with their write key)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from fnmatch import fnmatchcase

from schemas.vocabulary import NURTURE_ONLY_EVENTS

KEY_PREFIX = "nk_"


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    sources: tuple[str, ...]
    types: tuple[str, ...] = ("*",)

    def allows_source(self, source: str) -> bool:
        return any(fnmatchcase(source, pattern) for pattern in self.sources)

    def allows_type(self, etype: str) -> bool:
        """Whether this key may send events of `etype`: one of its patterns matches, and the
        type is not one only Nurture itself publishes (`message.*` outcomes, control events),
        whatever the patterns say (a forged `message.sent` would count as a real send)."""
        return etype not in NURTURE_ONLY_EVENTS and any(
            fnmatchcase(etype, pattern) for pattern in self.types)


class AuthError(Exception):
    """Why a request was refused: 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(authorization: str | None) -> str:
    """The key in an Authorization header, or AuthError(401) saying what is wrong with it."""
    if not authorization:
        raise AuthError(401, "missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            user, _, _ = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(401, "malformed Basic credentials") from None
        if user:
            return user
        raise AuthError(401, "Basic credentials carry no user name (the API key goes there)")
    raise AuthError(401, "unsupported Authorization scheme: use 'Bearer <key>' or Basic")


def authenticate(keys: tuple[ApiKey, ...], authorization: str | None) -> ApiKey:
    """The configured key matching the header; compares every hash in constant time."""
    digest = hash_key(presented_key(authorization))
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    if found is None:
        raise AuthError(401, "unknown API key")
    return found
