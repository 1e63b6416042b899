"""The dependencies ingest's routes share: the handlers, the API key (401 through the
`AuthError` handler of `errors.py`), rate-limited (429), and the request body (read with the
size limit, gunzipped).

`api_key` checks the keys in use of `app.state.api_keys` (a `KeyRing`, adapters/key_file.py:
they may change while the app runs)."""

from __future__ import annotations

import zlib
from typing import Annotated

from fastapi import Depends, Request

from services.ingest.adapters.key_file import KeyRing
from services.ingest.domain.auth import ApiKey, authenticate, check_origin
from services.ingest.domain.browser import same_origin
from services.ingest.domain.intake import Rejected
from services.ingest.service_layer.handlers import Handlers


def handlers(request: Request) -> Handlers:
    found: Handlers = request.app.state.handlers
    return found


HandlersDep = Annotated[Handlers, Depends(handlers)]


def api_key(request: Request) -> ApiKey:
    """The key of `Authorization: Bearer <key>` (or Basic with the key as user name) among
    `request.app.state.api_keys`; AuthError(401) saying what is wrong otherwise."""
    keys: KeyRing = request.app.state.api_keys
    return authenticate(keys.current, request.headers.get("authorization"))


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]


def admitted_key(request: Request, key: ApiKeyDep, service: HandlersDep) -> ApiKey:
    """The caller's API key, usable from the calling page if any (else 403) and within its
    rate limit (else 429 with Retry-After)."""
    admit_from_page(request, key, service)
    return key


def admit_from_page(request: Request, key: ApiKey, service: Handlers) -> None:
    """Let `key` be used by the request: from its page (`allow_page`), and within the key's
    rate limit and, for a browser key, the client address's (429 otherwise)."""
    allow_page(request, key)
    service.admit(key, request.client.host if request.client else None)


def allow_page(request: Request, key: ApiKey) -> None:
    """AuthError(403) for a request from a web page (`Origin`, not this server's own) that
    `key` does not allow; for one it allows, the answer from here on carries the CORS headers
    (`cors.py`), so the page can read it, errors included. Refusals before this point (no or
    unknown key, an unreadable body) and this 403 carry none."""
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, scheme=request.url.scheme,
                                              host=request.headers.get("host")):
        check_origin(key, origin)
        request.state.cors_origin = origin


AdmittedKey = Annotated[ApiKey, Depends(admitted_key)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body (gunzipped if sent gzip), refusing to buffer more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Rejected(413, f"request body over {limit} bytes")
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            plain = inflater.decompress(bytes(body), limit + 1)
        except zlib.error:
            raise Rejected(400, "body is not valid gzip") from None
        if len(plain) > limit or inflater.unconsumed_tail:
            raise Rejected(413, f"request body over {limit} bytes once decompressed")
        return plain
    return bytes(body)


async def body(request: Request, service: HandlersDep) -> bytes:
    return await read_body(request, service.settings.max_body_bytes)


Body = Annotated[bytes, Depends(body)]
