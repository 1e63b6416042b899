"""The handlers' exactly-once rules with the in-memory unit of work and scripted providers, in
milliseconds: a command recorded twice is delivered once; a failure before the hand-off is
retried; after the hand-off an at-most-once channel is settled `sent_unconfirmed` and never
resent while an at-least-once channel is resent under the same id; a suppressed lead is not
sent; an erased lead is never told; a stale lease cannot finish a delivery another worker now
owns."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from services.common.clock import ControllableClock
from services.common.kafka.deadletter import REPLAYED_HEADER
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.dispatch.adapters.channels import Channels, Composer
from services.dispatch.adapters.handoff import Handoff, no_handoff
from services.dispatch.adapters.memory import MemoryStore, MemoryUnitOfWork
from services.dispatch.adapters.status_writer import StatusWriter
from services.dispatch.adapters.templates import TemplateStore
from services.dispatch.domain.email import Sender
from services.dispatch.domain.errors import ProviderUnavailable
from services.dispatch.domain.messages import Sms, Webhook
from services.dispatch.domain.retry import RetryPolicy
from services.dispatch.domain.suppressions import Change
from services.dispatch.metrics import DispatchMetrics
from services.dispatch.service_layer.handlers import Handlers
from tests.support import ROOT

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TOPICS = Topics("t.")
LEASE = timedelta(seconds=120)
SENDING_TIMEOUT = timedelta(seconds=300)


@dataclass
class Scripted:
    """A provider following a script, one step per call: `ok`; `fail-before` (refused before
    the hand-off: it has nothing); `fail-after` (a timeout after the hand-off: it may have it);
    `hang-after` (the process dies after the hand-off: the call never returns); `gate-before`
    (held before the hand-off until `gate` is set). `taken` lists the message ids that went
    past the hand-off; `handed` is set each time one does."""

    script: list[str] = field(default_factory=list)
    taken: list[str] = field(default_factory=list)
    handed: asyncio.Event = field(default_factory=asyncio.Event)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, message_id: str, handoff: Handoff) -> str:
        step = self.script.pop(0) if self.script else "ok"
        if step == "fail-before":
            raise ProviderUnavailable("connection_failed", "refused")
        if step == "gate-before":
            self.holding.set()
            await self.gate.wait()
        await handoff()
        self.taken.append(message_id)
        self.handed.set()
        if step == "fail-after":
            raise ProviderUnavailable("timeout", "no answer in time")
        if step == "hang-after":
            await asyncio.Event().wait()
        return f"p-{message_id}"


class ScriptedMailer(Scripted):
    async def send(self, message: EmailMessage, *, handoff: Handoff = no_handoff) -> str:
        return await self.call(str(message["X-Nurture-Message-Id"]), handoff)

    async def close(self) -> None:
        pass


class ScriptedSms(Scripted):
    async def send(self, sms: Sms, *, handoff: Handoff = no_handoff) -> str:
        return await self.call(sms.message_id, handoff)


class ScriptedWebhooks(Scripted):
    async def send(self, hook: Webhook, *, now: datetime, handoff: Handoff = no_handoff) -> str:
        return await self.call(hook.message_id, handoff)


@dataclass
class World:
    clock: ControllableClock
    store: MemoryStore
    mailer: ScriptedMailer
    hooks: ScriptedWebhooks
    outbox_ready: asyncio.Event

    def handlers(self, sms: ScriptedSms | None = None, **overrides: Any) -> Handlers:
        """Handlers on the shared store (one per replica); SMS configured when `sms` is given."""
        def uow() -> MemoryUnitOfWork:
            return MemoryUnitOfWork(self.store, self.outbox_ready, self.clock)

        composer = Composer(TemplateStore(ROOT / "config" / "templates"),
                            Sender("Acme <hi@acme.example>", "acme.example"),
                            "https://t.acme.example", b"k" * 32, timedelta(days=30))
        options: dict[str, Any] = {
            "policy": RetryPolicy(max_attempts=3, base_delay=10, max_delay=60),
            "clock": self.clock, "jitter": lambda: 0.0, "lease": LEASE,
            "sending_timeout": SENDING_TIMEOUT} | overrides
        return Handlers(uow, StatusWriter(uow, self.clock), composer,
                        Channels(self.mailer, sms, None, self.hooks), TOPICS,
                        DispatchMetrics(new_registry()), **options)

    def events(self, message_id: str) -> list[tuple[str, str | None]]:
        """(type, reason) of the outcome events committed to the outbox for `message_id`."""
        found = []
        for record in self.store.outbox:
            if record.topic == TOPICS.events:
                event = orjson.loads(record.value)
                if event["data"]["message_id"] == message_id:
                    found.append((event["type"], event["data"].get("reason")))
        return found

    def row(self, message_id: str) -> Any:
        return self.store.deliveries[message_id]

    def later(self, delta: timedelta) -> None:
        self.clock.set(self.clock.now() + delta)


@pytest.fixture
def world() -> World:
    return World(ControllableClock(START), MemoryStore(), ScriptedMailer(), ScriptedWebhooks(),
                 asyncio.Event())


def command(message_id: str, *, lead: str = "lead-1", channel: str = "email") -> dict[str, Any]:
    return {"message_id": message_id, "lead_id": lead, "channel": channel,
            "template": "sms-follow-up-after-open" if channel == "sms" else "pricing-followup",
            "program_id": "pricing-abandoner", "program_version": 1,
            "step_id": "pricing-followup",
            "context": {"first_name": "Ada", "email": f"{lead}@example.com", "company": "Acme",
                        "phone": "+14155550123"},
            "created_at": START.isoformat(), "expires_at": (START + timedelta(days=7)).isoformat()}


def record(cmd: dict[str, Any], offset: int = 0,
           headers: tuple[tuple[str, bytes], ...] = ()) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(cmd)
    return ConsumerRecord("t.nurture.dispatch.v1", 0, offset, 0, 0, cmd["lead_id"].encode(),
                          value, None, 0, len(value), headers)


async def test_a_command_recorded_twice_is_delivered_once(world: World) -> None:
    handlers = world.handlers()
    cmd = command("m-1")
    await handlers.record_commands([record(cmd, 0), record(cmd, 1)])
    assert await handlers.deliver_due("email") == 1
    await handlers.record_commands([record(cmd, 2)])  # redelivered after it was sent
    assert await handlers.deliver_due("email") == 0
    assert world.mailer.taken == ["m-1"]
    assert (world.row("m-1").status, world.row("m-1").attempts) == ("sent", 1)
    assert world.events("m-1") == [("message.sent", None)]
    assert world.outbox_ready.is_set()


async def test_a_failure_before_the_hand_off_is_retried(world: World) -> None:
    handlers = world.handlers()
    world.mailer.script = ["fail-before"]
    await handlers.record_commands([record(command("m-1"))])
    await handlers.deliver_due("email")
    assert (world.row("m-1").status, world.mailer.taken) == ("pending", [])
    assert await handlers.deliver_due("email") == 0  # not due before its retry time
    world.later(timedelta(seconds=10))
    await handlers.deliver_due("email")
    assert world.mailer.taken == ["m-1"]
    assert (world.row("m-1").status, world.row("m-1").attempts) == ("sent", 2)
    assert world.events("m-1") == [("message.failed", "connection_failed"),
                                   ("message.sent", None)]


async def interrupted_after_the_hand_off(world: World, handlers: Handlers, provider: Scripted,
                                         channel: str) -> None:
    """A command whose attempt dies after its hand-off (the process is killed), then the
    sending timeout passes."""
    provider.script = ["hang-after"]
    await handlers.record_commands([record(command("m-1", channel=channel))])
    attempt = asyncio.create_task(handlers.deliver_due(channel))
    await provider.handed.wait()
    attempt.cancel()  # kill -9: nothing after the hand-off is recorded
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert world.row("m-1").status == "sending"
    world.later(SENDING_TIMEOUT + timedelta(seconds=1))


@pytest.mark.parametrize("resend", [frozenset(), frozenset({"email"})])
async def test_email_interrupted_after_the_hand_off_follows_its_guarantee(
        world: World, resend: frozenset[str]) -> None:
    handlers = world.handlers(resend_unconfirmed=resend)
    await interrupted_after_the_hand_off(world, handlers, world.mailer, "email")
    assert await handlers.recover_stale() == 1
    await handlers.deliver_due("email")
    if not resend:  # at-most-once: settled, reported, never resent, not even by a replay
        assert world.row("m-1").status == "failed"
        assert world.row("m-1").last_error.startswith("sent_unconfirmed")
        assert world.events("m-1") == [("message.failed", "sent_unconfirmed")]
        await handlers.record_commands([record(command("m-1"), 1, ((REPLAYED_HEADER, b"0/7"),))])
        assert await handlers.deliver_due("email") == 0
        assert world.mailer.taken == ["m-1"]
    else:  # at-least-once: resent under the same id
        assert world.mailer.taken == ["m-1", "m-1"]
        assert (world.row("m-1").status, world.row("m-1").attempts) == ("sent", 2)
        assert world.events("m-1") == [("message.sent", None)]


async def test_a_webhook_interrupted_after_the_hand_off_is_resent_by_default(
        world: World) -> None:
    handlers = world.handlers()  # crm_task and webhook: at-least-once
    await interrupted_after_the_hand_off(world, handlers, world.hooks, "webhook")
    assert await handlers.recover_stale() == 1
    assert await handlers.deliver_due("webhook") == 1
    assert world.hooks.taken == ["m-1", "m-1"]
    assert (world.row("m-1").status, world.row("m-1").attempts) == ("sent", 2)
    assert await handlers.recover_stale() == 0


async def test_a_timeout_after_the_hand_off_that_exhausts_the_budget_is_unconfirmed(
        world: World) -> None:
    handlers = world.handlers(policy=RetryPolicy(max_attempts=1, base_delay=10, max_delay=60))
    world.mailer.script = ["fail-after"]
    await handlers.record_commands([record(command("m-1"))])
    await handlers.deliver_due("email")
    row = world.row("m-1")
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("sent_unconfirmed: gave up after 1 attempts")
    assert [r.topic for r in world.store.outbox] == [TOPICS.deadletter, TOPICS.events]


async def test_a_suppressed_lead_is_not_sent(world: World) -> None:
    handlers = world.handlers()
    await handlers.apply_suppressions([Change("lead-1", "email", "unsubscribed", START)], [])
    await handlers.record_commands([record(command("m-1"))])
    await handlers.deliver_due("email")
    assert world.mailer.taken == []
    assert world.row("m-1").status == "suppressed"
    assert world.events("m-1") == [("message.suppressed", "unsubscribed")]


async def test_a_suppression_of_a_merged_away_lead_holds_for_the_lead_it_merged_into(
        world: World) -> None:
    handlers = world.handlers()
    await handlers.apply_suppressions([Change("anon-1", "email", "unsubscribed", START),
                                       Change("lead-1", "sms", "opted_out", START)], [])
    await handlers.apply_suppressions([], ["anon-2"])  # an id erased, then used again
    await handlers.apply_suppressions([], [], [("lead-1", "anon-1"), ("lead-2", "anon-2")])
    await handlers.record_commands([record(command("m-1")),
                                    record(command("m-2", lead="lead-2"))])
    await handlers.deliver_due("email")
    assert world.mailer.taken == ["m-2"]  # lead-2: the erasure of anon-2 is not copied
    assert world.events("m-1") == [("message.suppressed", "unsubscribed")]


@pytest.mark.parametrize("erased_first", [True, False])
async def test_an_erased_lead_is_never_told(world: World, erased_first: bool) -> None:
    handlers = world.handlers()
    if erased_first:  # the command was still on the topic (consumer lag) when she was erased
        await handlers.apply_suppressions([], ["lead-1"])
    await handlers.record_commands([record(command("m-1"))])
    if not erased_first:
        await handlers.apply_suppressions([], ["lead-1"])
    assert await handlers.deliver_due("email") == (1 if erased_first else 0)
    row = world.row("m-1")
    assert world.mailer.taken == []
    assert (row.status, row.payload) == ("suppressed", None)
    assert row.lead_id.startswith("erased-")
    assert world.events("m-1") == []
    assert world.store.outbox == []


async def test_a_stale_lease_cannot_finish_a_delivery_another_worker_owns(
        world: World) -> None:
    first, second = world.handlers(), world.handlers()
    world.mailer.script = ["gate-before", "ok"]
    await first.record_commands([record(command("m-1"))])
    slow = asyncio.create_task(first.deliver_due("email"))
    await world.mailer.holding.wait()  # the first worker's claim is held before its hand-off
    world.later(LEASE + timedelta(seconds=1))  # its lease ran out
    assert await second.deliver_due("email") == 1
    world.mailer.gate.set()
    assert await slow == 1
    assert world.mailer.taken == ["m-1"]
    assert (world.row("m-1").status, world.row("m-1").attempts) == ("sent", 1)
    assert world.events("m-1") == [("message.sent", None)]


async def test_a_malformed_command_is_dead_lettered_and_the_rest_recorded(world: World) -> None:
    handlers = world.handlers()
    bad = ConsumerRecord("t.nurture.dispatch.v1", 0, 0, 0, 0, b"k", b"not json", None, 0, 8, ())
    await handlers.record_commands([bad, record(command("m-1"), 1)])
    assert [r.topic for r in world.store.outbox] == [TOPICS.deadletter]
    assert world.row("m-1").status == "pending"


async def test_a_dead_letter_replayed_after_the_fix_is_sent_once(world: World) -> None:
    cmd = command("m-1", channel="sms")
    await world.handlers().record_commands([record(cmd)])
    await world.handlers().deliver_due("sms")  # SMS is not configured: failed for good
    assert world.row("m-1").status == "failed"
    assert world.events("m-1") == [("message.failed", "channel_not_configured")]
    fixed = world.handlers(sms=ScriptedSms())  # restarted with SMS configured
    replay = ((REPLAYED_HEADER, b"0/7"),)
    await fixed.record_commands([record(cmd, 1, replay)])
    assert await fixed.deliver_due("sms") == 1
    await fixed.record_commands([record(cmd, 2, replay)])  # replayed again, by mistake
    assert await fixed.deliver_due("sms") == 0
    sms = fixed.channels.sms
    assert isinstance(sms, ScriptedSms) and sms.taken == ["m-1"]
    assert (world.row("m-1").status, world.row("m-1").attempts) == ("sent", 1)
