"""docker-compose.yml for real, on a machine that cannot pull from Docker Hub.

    python -m deploy.compose images   # build the images the compose file names, locally
    python -m deploy.compose check    # = make compose-check: up, the README's first event end
                                      # to end, down and up again with the topics kept, down -v

`images` builds Nurture's image and the SMTP sink's (deploy/image.py: Debian's dockerd and a base
from Debian's packages if needed), and stand-ins for the public Kafka and PostgreSQL images from
Debian's packages and the project's own Kafka jars (deploy/compose/*.Dockerfile). `check` runs
the compose file as shipped, with only image names and host ports set through an env file (as a
`.env` would), using Debian's docker-compose."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

from deploy import image
from deploy.local.stack import free_port, kafka_libs

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TAGS = {"KAFKA_IMAGE": "nurture-kafka:local", "POSTGRES_IMAGE": "nurture-postgres:local",
        "NURTURE_IMAGE": "nurture:dev", "SMTP_SINK_IMAGE": "nurture-smtp-sink:dev"}
PORTS = ("INGEST_HOST_PORT", "ORCHESTRATOR_HOST_PORT", "DISPATCH_HOST_PORT",
         "SCORING_METRICS_HOST_PORT", "SMTP_SINK_HOST_PORT", "KAFKA_HOST_PORT",
         "POSTGRES_HOST_PORT")
API_KEY = "nurture-dev-key"  # the compose file's local key


def log(msg: str) -> None:
    print(f"[compose] {msg}", file=sys.stderr, flush=True)


def images(host: str) -> dict[str, str]:
    """Build every image the compose file names; {variable: tag}."""
    base = image.base_image(host)
    image.build(host, TAGS["NURTURE_IMAGE"], base=base, revision=image.revision())
    image.build_file(host, ROOT / "deploy" / "smtp-sink.Dockerfile", ROOT,
                     TAGS["SMTP_SINK_IMAGE"], base=base)
    image.build_file(host, HERE / "postgres.Dockerfile", HERE, TAGS["POSTGRES_IMAGE"], base=base)
    with tempfile.TemporaryDirectory() as tmp:  # the jars and the scripts, as the context
        context = Path(tmp)
        shutil.copytree(kafka_libs(), context / "libs")
        for name in ("kafka.Dockerfile", "kafka_entrypoint.py", "kafka-broker-api-versions.sh"):
            shutil.copy2(HERE / name, context / name)
        image.build_file(host, context / "kafka.Dockerfile", context, TAGS["KAFKA_IMAGE"],
                         base=base)
    return dict(TAGS)


def first_event() -> dict[str, object]:
    """The event of the README's "Send a first event"."""
    section = (ROOT / "README.md").read_text().split("### Send a first event", 1)[1]
    match = re.search(r"-d '(\{.*?\})'", section, re.S)
    if match is None:
        raise SystemExit("README: no `-d '{...}'` under 'Send a first event'")
    event: dict[str, object] = json.loads(match.group(1))
    return event


async def poll(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(1.0)
    raise SystemExit(f"compose check: timed out waiting for {what}")


async def on_topic(bootstrap: str, topic: str, event_id: object) -> bool:
    """Whether the event (by id) is on `topic`, read from the beginning."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    try:
        await consumer.start()
        batch = await consumer.getmany(timeout_ms=5000)
    except Exception:  # the broker still starting: not there yet
        return False
    finally:
        await consumer.stop()
    return any(f'"{event_id}"'.encode() in (r.value or b"") for rs in batch.values() for r in rs)


async def serves(ports: dict[str, int], event: dict[str, object]) -> None:
    """Ingest answers, accepts the event, and it is on the events and scored-events topics."""
    bootstrap = f"127.0.0.1:{ports['KAFKA_HOST_PORT']}"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['INGEST_HOST_PORT']}") as c:
        async def ready() -> bool:
            try:
                return (await c.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False
        await poll(ready, within=300, what="ingest to be ready")
        r = await c.post("/v1/events", json=event, headers={
            "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/cloudevents+json"})
        if r.status_code != 202:
            raise SystemExit(f"compose check: POST /v1/events answered {r.status_code}: {r.text}")
    for topic in ("nurture.events.v1", "nurture.scored-events.v1"):
        await until_on(bootstrap, topic, event["id"])
        log(f"the event is on {topic}")


async def until_on(bootstrap: str, topic: str, event_id: object) -> None:
    async def there() -> bool:
        return await on_topic(bootstrap, topic, event_id)
    await poll(there, within=180, what=f"the event on {topic}")


def distinct_ports() -> dict[str, int]:
    """A free host port for each published port, no two the same."""
    chosen: set[int] = set()
    while len(chosen) < len(PORTS):
        chosen.add(free_port())
    return dict(zip(PORTS, sorted(chosen), strict=True))


def check() -> int:
    host = image.engine()
    image.apt_install("docker-compose")
    tags = images(host)
    ports = distinct_ports()
    with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as env_file:
        env_file.write("".join(f"{k}={v}\n" for k, v in {**tags, **ports}.items()))
    compose = ["docker-compose", "--project-name", "nurture-check", "--env-file", env_file.name,
               "--file", str(ROOT / "docker-compose.yml")]
    env = {**os.environ, "DOCKER_HOST": host}

    def run(*args: str) -> None:
        log(" ".join(["docker-compose", *args]))
        subprocess.run([*compose, *args], env=env, check=True, cwd=ROOT)

    event = first_event()
    try:
        run("up", "--detach", "--no-build")
        asyncio.run(serves(ports, event))
        run("down")  # the volumes stay
        run("up", "--detach", "--no-build")
        asyncio.run(until_on(f"127.0.0.1:{ports['KAFKA_HOST_PORT']}", "nurture.events.v1",
                             event["id"]))
        log("after down and up, the topic still has the event: OK")
    except BaseException:
        subprocess.run([*compose, "ps"], env=env, check=False, cwd=ROOT)
        subprocess.run([*compose, "logs", "--tail", "40"], env=env, check=False, cwd=ROOT)
        raise
    finally:
        subprocess.run([*compose, "down", "--volumes"], env=env, check=False, cwd=ROOT)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.compose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("images", "check"))
    args = parser.parse_args(argv)
    try:
        if args.step == "images":
            print(json.dumps(images(image.engine()), indent=2))
            return 0
        return check()
    except (image.ImageError, subprocess.CalledProcessError) as exc:
        print(f"compose: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
