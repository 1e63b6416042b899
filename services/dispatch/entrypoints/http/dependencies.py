"""What the routes depend on (FastAPI `Depends`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.dispatch.bootstrap import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
