"""Where ingest's errors become HTTP answers: `{"detail", "errors"?}` bodies with the status
the error names (and `WWW-Authenticate` / `Retry-After` where they apply)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.ingest.adapters.publisher import PublishRefused, PublishUnavailable
from services.ingest.domain.auth import AuthError
from services.ingest.domain.intake import FieldProblem, Rejected

log = logging.getLogger(__name__)


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def listed(problems: list[FieldProblem]) -> list[dict[str, Any]]:
    return [{"index": p.index, "path": p.path, "message": p.message} for p in problems]


async def auth_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    response = problem(exc.status, exc.message)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="nurture"'
    return response


async def rejected(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Rejected)
    response = problem(exc.status, exc.message, listed(exc.problems))
    if exc.retry_after:
        response.headers["Retry-After"] = exc.retry_after
    return response


async def publish_refused(_request: Request, exc: Exception) -> JSONResponse:
    return problem(413, f"{exc}; nothing was accepted")


async def publish_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("publish failed, answering 503", extra={"reason": str(exc)})
    response = problem(503, "Kafka did not acknowledge the events in time: they are "
                            "not accepted; retry them (id + source make a retry safe)")
    response.headers["Retry-After"] = str(request.app.state.handlers.settings.retry_after_seconds)
    return response


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuthError, auth_error)
    app.add_exception_handler(Rejected, rejected)
    app.add_exception_handler(PublishRefused, publish_refused)
    app.add_exception_handler(PublishUnavailable, publish_unavailable)
