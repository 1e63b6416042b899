"""5. Dispatch: sends/s of the real handlers, as bootstrap.py builds them (commands recorded
with the idempotency check — every command is fed twice, the second copy must change nothing —
then the channel loop's rounds: claim, render, `sending`, provider call, `sent` + outcome event
in the outbox) to local fake SMTP and HTTP peers (bench/peers.py, a child process), against a
bare loop sending the same number of messages to the same peers: aiosmtplib on one connection
for email, and httpx with the same concurrency for webhooks (aiohttp is not installed; httpx is
what dispatch itself uses)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import orjson
from aiokafka.structs import ConsumerRecord

from bench.core import ROOT, Sizes, Stopwatch, absolute, compare, rate
from bench.infra import Infra, child, free_port, http_ready
from services.common.config.settings import KafkaSettings
from services.common.tracking import TrackingSettings
from services.dispatch.adapters.migrate import upgrade
from services.dispatch.bootstrap import bootstrap
from services.dispatch.service_layer.handlers import Handlers
from services.dispatch.settings import DispatchSettings

HOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - a local fake peer
TEMPLATE = "pricing-followup"


def command(lead: str, channel: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "message_id": uuid.uuid4().hex, "lead_id": lead, "channel": channel,
        "template": TEMPLATE, "program_id": "pricing-abandoner", "program_version": 1,
        "step_id": "pricing-followup",
        "context": {"first_name": "Ada", "last_name": "Lovelace", "email": f"{lead}@example.com",
                    "company": "Acme", "stage": "mql", "journey_stage": "decision",
                    "interests": ["streaming"], "scores": {"b2b": {"total": 72.5}}},
        "created_at": now.isoformat(), "expires_at": (now + timedelta(days=1)).isoformat(),
        "subject": None, "due_at": None}


def records(cmds: list[dict[str, Any]]) -> list[ConsumerRecord[bytes, bytes]]:
    out = []
    for offset, cmd in enumerate(cmds):
        value = orjson.dumps(cmd)
        out.append(ConsumerRecord("bench.dispatch", 0, offset, 0, 0, cmd["lead_id"].encode(),
                                  value, None, 0, len(value), ()))
    return out


async def received(http: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        doc: dict[str, Any] = (await client.get(f"{http}/received")).json()
        return doc


async def real(infra: Infra, kafka: KafkaSettings, smtp_port: int, http: str, channel: str,
               n: int) -> tuple[float, int, float]:
    """Sends/s, sends the peer received, and this process's CPU microseconds per send."""
    schema = infra.schema("dispatch")
    await asyncio.to_thread(upgrade, infra.database_url, schema)
    settings = DispatchSettings(
        DATABASE_URL=infra.database_url, db_schema=schema, smtp_port=smtp_port,
        templates=str(ROOT / "config" / "templates"), webhook_url=f"{http}/hooks",
        webhook_secret=HOOK_SECRET)
    service = bootstrap(settings, kafka, TrackingSettings(secret="k" * 32))
    recs = records([command(f"lead-{i}", channel) for i in range(n)])
    try:
        await deliver(service.handlers, channel, recs[:2])  # warm-up: connections, templates
        before = await received(http)
        clock, cpu = Stopwatch(), time.process_time()
        await deliver(service.handlers, channel, recs[2:])
        seconds, cpu = clock(), time.process_time() - cpu
        after = await received(http)
    finally:
        await service.aclose()
    arrived = sum(after[k] - before[k] for k in ("smtp", "http"))
    return rate(len(recs) - 2, seconds), arrived, round(cpu * 1e6 / (len(recs) - 2), 1)


async def deliver(handlers: Handlers, channel: str,
                  recs: list[ConsumerRecord[bytes, bytes]]) -> None:
    await handlers.record_commands(recs)
    await handlers.record_commands(recs)  # redelivered: the idempotency check drops them
    while await handlers.deliver_due(channel):
        pass


async def bare_smtp(port: int, n: int) -> float:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await client.connect()
    try:
        clock = Stopwatch()
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"] = "nurture@localhost", f"lead-{i}@example.com"
            msg["Subject"] = "Pricing"
            msg.set_content("Hello Ada, about pricing.")
            await client.send_message(msg)
        return rate(n, clock())
    finally:
        await client.quit()


async def bare_http(url: str, n: int, concurrency: int) -> float:
    queue = list(range(n))
    async with httpx.AsyncClient() as client:
        async def worker() -> None:
            while queue:
                i = queue.pop()
                r = await client.post(url, json={"lead_id": f"lead-{i}", "text": "Pricing"})
                r.raise_for_status()
        clock = Stopwatch()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return rate(n, clock())


async def run(infra: Infra, sizes: Sizes) -> dict[str, Any]:
    kafka = await infra.kafka(partitions=1)
    smtp_port, http_port = free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    n = sizes.sends
    measured_n = n - 2  # after the warm-up
    async with child(["-m", "bench.peers", str(smtp_port), str(http_port)], {},
                     infra.workdir / "peers.log", http_ready(f"{http}/received")):
        email_rate, email_sent, email_cpu = await real(infra, kafka, smtp_port, http, "email", n)
        hook_rate, hook_sent, hook_cpu = await real(infra, kafka, smtp_port, http, "webhook", n)
        smtp_rate = await bare_smtp(smtp_port, n)
        httpx_rate = await bare_http(f"{http}/bare", n, 8)
        peer = await received(http)
    return {
        "measured": {"email_sends_per_s": email_rate, "webhook_sends_per_s": hook_rate,
                     "bare_smtp_per_s": smtp_rate, "bare_httpx_per_s": httpx_rate,
                     "email_received": email_sent, "webhook_received": hook_sent,
                     "email_cpu_us_per_send": email_cpu, "webhook_cpu_us_per_send": hook_cpu,
                     "peer_received": {"smtp": peer["smtp"], "http": peer["http"]},
                     "commands_each": measured_n, "each_fed_twice": True},
        "comparisons": [
            compare("dispatch email sends", email_rate, smtp_rate, target=0.6, unit="sends/s",
                    baseline_name="bare aiosmtplib loop, one connection",
                    extra={"received_minus_commands": email_sent - measured_n,
                           "cpu_us_per_send": email_cpu}),
            compare("dispatch webhook sends", hook_rate, httpx_rate, target=0.6,
                    unit="sends/s", baseline_name="bare httpx loop, 8 in flight",
                    extra={"received_minus_commands": hook_sent - measured_n,
                           "cpu_us_per_send": hook_cpu}),
            absolute("dispatch CPU per email send (its process; PostgreSQL apart)", email_cpu,
                     unit="µs", target=None, higher_is_better=False),
            absolute("dispatch CPU per webhook send (its process; PostgreSQL apart)", hook_cpu,
                     unit="µs", target=None, higher_is_better=False),
        ],
    }
