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


BROWSER_TYPES = ("web.*", "crm.lead_upserted", "identity.linked")
"""What a browser key (one with origins) may send unless its `types` say otherwise: web
behavior, the profile an `identify` call sets and the link an `alias` call makes; never other
CRM, email or product events."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    sources: tuple[str, ...]
    types: tuple[str, ...] = ("*",)
    origins: tuple[str, ...] = ()
    """Web origins (glob patterns, e.g. `https://www.example.com`) whose pages may use this key
    from a browser (CORS); none: a server-side key, refused from any page."""

    @property
    def browser(self) -> bool:
        return bool(self.origins)

    def allows_origin(self, origin: str) -> bool:
        return any(fnmatchcase(origin.lower(), pattern.lower()) for pattern in self.origins)

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
    return key_named_by(keys, presented_key(authorization))


def check_origin(key: ApiKey, origin: str | None) -> None:
    """AuthError(403) for a request from a web page (`Origin`) the key does not allow; a
    request without `Origin` comes from no browser page and is judged by the key alone."""
    if origin is not None and not key.allows_origin(origin):
        where = "a browser" if not key.browser else f"origin '{origin}'"
        raise AuthError(403, f"API key '{key.name}' may not be used from {where}"
                             + ("" if key.browser else " (it has no allowed origins)"))


def key_named_by(keys: tuple[ApiKey, ...], presented: str) -> ApiKey:
    """The configured key whose hash is the presented key's; compares every hash in constant
    time; AuthError(401) if none is."""
    digest = hash_key(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    if found is None:
        raise AuthError(401, "unknown API key")
    return found
