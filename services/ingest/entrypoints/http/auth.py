"""The API-key dependency: `key: Annotated[ApiKey, Depends(api_key)]` on a route gives the
caller's configured key, or answers 401 (the `AuthError` handler of `errors.py`).

Written to be shared: it only needs the app to hold its keys in `app.state.api_keys` (a tuple
of `ApiKey`). It belongs in `services/common/http/` (with `domain/auth.py`, which is pure) once
another service authenticates API keys; until then it lives here."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.ingest.domain.auth import ApiKey, authenticate


def api_key(request: Request) -> ApiKey:
    """The key of `Authorization: Bearer <key>` (or Basic with the key as user name) among
    `request.app.state.api_keys`; AuthError(401) saying what is wrong otherwise."""
    keys: tuple[ApiKey, ...] = request.app.state.api_keys
    return authenticate(keys, request.headers.get("authorization"))


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]
