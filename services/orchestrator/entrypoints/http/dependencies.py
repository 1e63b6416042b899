"""What the routers depend on (FastAPI `Depends`): the built orchestrator, its handlers and
read models, and the bearer-token checks."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel, SecretStr

from services.orchestrator.bootstrap import Orchestrator
from services.orchestrator.service_layer.handlers import Handlers
from services.orchestrator.service_layer.unit_of_work import Views


class Problem(BaseModel):
    detail: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers of a route (all `{"detail": "..."}`)."""
    what = {400: "The body is not JSON", 401: "Missing or wrong bearer token",
            404: "Not found, or the endpoint is off", 409: "Not allowed now; `detail` says why",
            413: "The request body is too large", 503: "Not ready or not healthy"}
    return {code: {"model": Problem, "description": what[code]} for code in codes}


def orchestrator(request: Request) -> Orchestrator:
    return request.app.state.orch  # type: ignore[no-any-return]


def handlers(request: Request) -> Handlers:
    return orchestrator(request).handlers


def views(request: Request) -> Views:
    return orchestrator(request).views


Orch = Annotated[Orchestrator, Depends(orchestrator)]
Uses = Annotated[Handlers, Depends(handlers)]
Reads = Annotated[Views, Depends(views)]


def _bearer(request: Request, secret: SecretStr, message: str) -> None:
    given = request.headers.get("authorization", "")
    expected = f"Bearer {secret.get_secret_value()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, message, headers={"WWW-Authenticate": 'Bearer realm="nurture"'})


def api_token(request: Request) -> None:
    """The /v1 API's bearer token."""
    secret = orchestrator(request).settings.api_token
    if secret is None:
        raise HTTPException(401, "the API has no token configured")
    _bearer(request, secret, "missing or wrong bearer token")


def own_token(field: str, what: str, variable: str) -> Callable[[Request], None]:
    """The check of endpoints behind a token of their own: 404 while the token is unset (the
    endpoints are off), 401 for any other credentials (the API token included)."""
    def check(request: Request) -> None:
        secret: SecretStr | None = getattr(orchestrator(request).settings, field)
        if secret is None:
            raise HTTPException(404, f"{what} are disabled (set NURTURE_ORCHESTRATOR_{variable}"
                                     "_TOKEN to enable them)")
        _bearer(request, secret, f"missing or wrong {variable.lower()} token")
    return check


API = [Depends(api_token)]
ADMIN = [Depends(own_token("admin_token", "admin endpoints", "ADMIN"))]
ENROLLMENT = [Depends(own_token("enrollment_token", "enrollment changes", "ENROLLMENT"))]
