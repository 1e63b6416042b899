"""Events from web pages (pure): the calls of Segment's analytics.js (`@segment/analytics-next`,
and libraries speaking its protocol), the settings document it loads at start-up, and CORS.

analytics.js posts each call to `<apiHost>/<first letter of its type>` (`/v1/t` track, `/p`
page, `/i` identify, `/g` group, `/a` alias, `/s` screen) or, when batching, a batch to `/b`;
the body is JSON sent as `text/plain` (no CORS preflight needed for it), with the write key in
the body (`writeKey`) and, in recent versions, also as HTTP Basic. RudderStack's browser library
posts the same calls to `/v1/track`, `/v1/page`, ... as `application/json` with the write key as
HTTP Basic (a preflight first). Every call then takes the
path of a Segment batch call (`segment.py`): the same mapping, limits and dead letters.

CORS is per API key: a key's `origins` name the pages that may use it. A preflight carries no
key, so it is answered for an origin some key allows; the request itself is then judged by its
own key (`auth.check_origin`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.ingest.domain.auth import ApiKey
from services.ingest.domain.intake import Rejected

TYPES = ("track", "page", "identify", "group", "alias", "screen")
CALLS = {**{kind[0]: kind for kind in TYPES}, **{kind: kind for kind in TYPES}}
"""`/v1/<kind>` -> call type: analytics.js's one-letter paths, and the whole words RudderStack's
browser library (`@rudderstack/analytics-js`) posts to."""
BATCH = "b"
ALLOWED_HEADERS = frozenset({"authorization", "content-type", "x-retry-count", "anonymousid",
                             "sentat"})
"""Request headers a page may send (analytics.js: Basic auth, text/plain, its retry count;
RudderStack's: its anonymous id and send time, which its body carries too)."""
PREFLIGHT_MAX_AGE = "600"


def calls_of(kind: str, doc: Any) -> tuple[str | None, dict[str, Any]]:
    """(the write key in the body, if any; the Segment batch document) of what a page posted to
    `/v1/<kind>`: one call (`kind` in CALLS, whose type it takes) or a batch (`b`)."""
    if not isinstance(doc, dict):
        raise Rejected(400, "the body must be a JSON object")
    write_key = doc.get("writeKey")
    if kind == BATCH:
        batch = {k: v for k, v in doc.items() if k != "writeKey"}
        if isinstance(batch.get("batch"), list):
            batch["batch"] = [_without_key(call) for call in batch["batch"]]
    else:
        batch = {"batch": [{**_without_key(doc), "type": CALLS[kind]}]}
    return (write_key if isinstance(write_key, str) and write_key else None), batch


def _without_key(call: Any) -> Any:
    return {k: v for k, v in call.items() if k != "writeKey"} if isinstance(call, dict) else call


def cors_headers(origin: str) -> dict[str, str]:
    """The headers that let the page at `origin` read the answer."""
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def preflight(keys: Iterable[ApiKey], *, origin: str, method: str | None,
              requested: str | None) -> dict[str, str] | None:
    """The headers of the answer to a CORS preflight, or None to refuse it: the origin must be
    one some key allows, the method POST or GET, the headers among ALLOWED_HEADERS."""
    asked = {h.strip().lower() for h in (requested or "").split(",") if h.strip()}
    if method not in ("POST", "GET") or not asked <= ALLOWED_HEADERS:
        return None
    if not any(key.allows_origin(origin) for key in keys):
        return None
    return {**cors_headers(origin), "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": ", ".join(sorted(ALLOWED_HEADERS)),
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE}


def same_origin(origin: str, *, scheme: str, host: str | None) -> bool:
    """Whether `origin` is the server's own, scheme, host and port (a page it serves itself,
    such as /docs)."""
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


def settings_document(write_key: str, *, api_host: str, protocol: str) -> dict[str, Any]:
    """What analytics.js loads from `<cdnURL>/v1/projects/<writeKey>/settings`: send every call
    to this ingest (`<protocol>://<api_host>/<t|p|i|g|a|s>`), load no other destination, and
    report no metrics elsewhere."""
    return {
        "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": api_host,
                                        "protocol": protocol}},
        "plan": {}, "edgeFunction": {}, "analyticsNextEnabled": True,
        "middlewareSettings": {}, "enabledMiddleware": {}, "remotePlugins": [],
        "metrics": {"sampleRate": 0},
    }
