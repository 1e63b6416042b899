"""CORS for ingest's `/v1/` routes, per API key (`domain/browser.py`): a preflight is answered
here (for an origin some key allows); any other request's answer carries the CORS headers once
its route has let the page use the key (`dependencies.allow_page` sets
`request.state.cors_origin`), whatever the answer is from then on (a 422 or 429 too, so the page
can read why). A refusal before that (no or unknown key, an origin the key does not allow, an
unreadable body) carries none: the page learns only that it failed."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.domain.auth import ApiKey
from services.ingest.domain.browser import cors_headers, preflight

PREFIX = "/v1/"


class Cors:
    """Pure ASGI middleware; `keys` gives the API keys in use now."""

    def __init__(self, app: ASGIApp, keys: Callable[[], tuple[ApiKey, ...]]) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        asked = headers.get("access-control-request-method")
        if scope["method"] == "OPTIONS" and origin is not None and asked is not None:
            await self._preflight(origin, asked, headers)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            allowed = scope.get("state", {}).get("cors_origin")
            if message["type"] == "http.response.start" and allowed:
                MutableHeaders(scope=message).update(cors_headers(allowed))
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, origin: str, method: str, headers: Headers) -> Response:
        answer = preflight(self.keys(), origin=origin, method=method,
                           requested=headers.get("access-control-request-headers"))
        if answer is None:
            return JSONResponse({"detail": f"no API key may be used from origin '{origin}' "
                                           f"for {method} with these headers"}, status_code=403)
        return Response(status_code=204, headers=answer)
