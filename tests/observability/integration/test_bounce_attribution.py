"""Email provider webhooks carry only the message id: the orchestrator finds the program and
step that sent the message (the `messages` table, one query per batch) so bounce, delivery and
complaint rates by step do not all land in `other`. Real PostgreSQL, real decisions."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from schemas.vocabulary import rfc3339
from services.common.observability.metrics import new_registry
from services.orchestrator.adapters.migrate import upgrade
from services.orchestrator.domain.decide import Decider
from services.orchestrator.domain.policy import ContactPolicy
from services.orchestrator.domain.program import EventMatch, Program, Step, Trigger
from services.orchestrator.metrics import OrchestratorMetrics
from tests.orchestrator.support import orchestrator
from tests.support import scored_record

# events as a publisher sends them now: a program's max_event_age (3 days by default)
# judges their age against the orchestrator's clock, the wall clock here
RECENT = rfc3339(time.time() - 60)

PRICING = Program(
    id="pricing", version=1, name="Pricing",
    trigger=Trigger("event", event=EventMatch(frozenset({"web.page_viewed"}), lambda d: True)),
    steps=(Step("email-1", "send", channel="email", template="pricing-followup"),))
LEAD = "lead-bounce"


def scored(offset: int, etype: str, data: dict[str, object]) -> ConsumerRecord[bytes, bytes]:
    value = scored_record({"id": f"e{offset}", "source": "t", "type": etype, "subject": LEAD,
                           "time": RECENT, "data": data})
    return ConsumerRecord("scored", 0, offset, 0, 0, LEAD.encode(), value, None, len(LEAD),
                          len(value), [])


def events(registry: CollectorRegistry, program: str, step: str, event: str) -> float:
    return registry.get_sample_value("nurture_orchestrator_message_events_total", {
        "program": program, "step": step, "channel": "email", "event": event}) or 0.0


async def test_a_bounce_with_only_a_message_id_counts_for_its_program_and_step(
        database_url: str) -> None:
    schema = f"bounce_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(upgrade, database_url, schema)
    engine = create_async_engine(database_url,
                                 connect_args={"server_settings": {"search_path": schema}})
    decider = Decider([PRICING], ContactPolicy(caps=(), quiet_hours=None))
    registry = new_registry()
    orch = orchestrator(engine, decider, metrics=OrchestratorMetrics(registry, decider.programs))
    try:
        await orch.handlers.handle_scored_events([
            scored(0, "crm.lead_upserted", {"email": "ada@example.com",
                                            "consent": {"email": "opted_in"}}),
            scored(1, "web.page_viewed", {"url": "u", "path": "/pricing"})])
        async with engine.connect() as conn:
            sent = (await conn.execute(text(
                "SELECT message_id FROM messages WHERE status = 'sent'"))).scalars().all()
        assert len(sent) == 1, sent
        await orch.handlers.handle_scored_events([
            scored(2, "email.delivered", {"message_id": sent[0]}),
            scored(3, "email.bounced", {"message_id": sent[0], "bounce_type": "hard"}),
            scored(4, "email.complained", {"message_id": "not-ours"})])
        assert events(registry, "pricing", "email-1", "delivered") == 1
        assert events(registry, "pricing", "email-1", "bounced") == 1
        assert events(registry, "other", "other", "bounced") == 0
        assert events(registry, "other", "other", "complained") == 1  # unknown: still counted
    finally:
        await engine.dispose()
