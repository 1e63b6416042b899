"""What the routers depend on (FastAPI `Depends`): the built orchestrator, its handlers and
read models, and the bearer-token checks (`services/common/http/auth.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, SecretStr

from services.common.http.auth import bearer_token
from services.orchestrator.bootstrap import Orchestrator
from services.orchestrator.service_layer.handlers import Handlers
from services.orchestrator.service_layer.unit_of_work import Views
from services.orchestrator.settings import OrchestratorSettings


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


@dataclass(frozen=True)
class Tokens:
    """The bearer-token checks of the routes (the shared `bearer_token`), built once per app
    from the settings by `create_app`."""

    api: Callable[[Request], None]
    admin: Callable[[Request], None]
    enrollment: Callable[[Request], None]


def _own(secret: SecretStr | None, what: str, variable: str) -> Callable[[Request], None]:
    """Endpoints behind a token of their own: 404 while the token is unset (the endpoints are
    off), 401 for any other credentials (the API token included)."""
    return bearer_token(secret, name=variable.lower(), when_unset=404, unset_detail=(
        f"{what} are disabled (set NURTURE_ORCHESTRATOR_{variable}_TOKEN to enable them)"))


def tokens(settings: OrchestratorSettings) -> Tokens:
    return Tokens(
        api=bearer_token(settings.api_token, name="bearer", when_unset=401,
                         unset_detail="the API has no token configured"),
        admin=_own(settings.admin_token, "admin endpoints", "ADMIN"),
        enrollment=_own(settings.enrollment_token, "enrollment changes", "ENROLLMENT"))


def _tokens(request: Request) -> Tokens:
    return request.app.state.tokens  # type: ignore[no-any-return]


def api_token(request: Request) -> None:
    """The /v1 API's bearer token."""
    _tokens(request).api(request)


def admin_token(request: Request) -> None:
    _tokens(request).admin(request)


def enrollment_token(request: Request) -> None:
    _tokens(request).enrollment(request)


API = [Depends(api_token)]
ADMIN = [Depends(admin_token)]
ENROLLMENT = [Depends(enrollment_token)]
