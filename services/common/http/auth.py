"""Bearer-token dependencies for the operator and API endpoints of the services (FastAPI
`Depends`). Tokens are compared in constant time; a wrong token is a 401 with a
`WWW-Authenticate` challenge, and no token is ever logged or echoed."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Literal

from fastapi import HTTPException, Request
from pydantic import SecretStr

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nurture"'}


def bearer_token(secret: SecretStr | None, *, name: str, when_unset: Literal[401, 404],
                 unset_detail: str) -> Callable[[Request], None]:
    """A dependency that lets a request through only with `Authorization: Bearer <secret>`.

    `name` says which token in the 401 message ("bearer", "admin", ...). While `secret` is unset
    the endpoints answer `when_unset` with `unset_detail` (which should name the setting): 404
    for endpoints that are off until their own token is set, 401 for the API itself."""
    expected = f"Bearer {secret.get_secret_value()}".encode() if secret is not None else None

    def check(request: Request) -> None:
        if expected is None:
            raise HTTPException(when_unset, unset_detail)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(401, f"missing or wrong {name} token", headers=CHALLENGE)

    return check
