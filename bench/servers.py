"""Servers the benchmarks run as child processes, so the load generator and the server under
test each get their own interpreter (and core):

    python -m bench.servers ingest PORT   # the real ingest app, producing to Kafka
    python -m bench.servers bare PORT     # baseline: FastAPI, same validation, 202, no Kafka

Kafka comes from KAFKA_BOOTSTRAP_SERVERS / NURTURE_TOPIC_PREFIX as for the services."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from schemas import validate_event
from services.common.config.settings import KafkaSettings
from services.ingest.bootstrap import bootstrap
from services.ingest.domain.auth import hash_key
from services.ingest.entrypoints.http.app import create_app
from services.ingest.settings import ApiKeyConfig, IngestSettings

KEY = "nk_bench"


def real_app() -> Any:
    settings = IngestSettings(api_keys=[ApiKeyConfig(name="bench", sha256=hash_key(KEY))],
                              rate_limit_per_second=0)
    return create_app(bootstrap(settings, KafkaSettings()))


def bare_app() -> FastAPI:
    """Parse, validate every event against its JSON Schema (what ingest does), answer 202."""
    app = FastAPI()

    @app.post("/v1/events")
    async def post(request: Request) -> Response:
        body = orjson.loads(await request.body())
        events = body if isinstance(body, list) else [body]
        problems = [p for e in events for p in validate_event(e)]
        if problems:
            return Response(orjson.dumps({"errors": len(problems)}), status_code=422)
        return Response(orjson.dumps({"accepted": len(events)}), status_code=202,
                        media_type="application/json")

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str]) -> int:
    kind, port = argv[0], int(argv[1])
    app = real_app() if kind == "ingest" else bare_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
