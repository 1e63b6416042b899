"""The topic map (docs/architecture.md, "Topics") and `ensure_topics`, which creates them
(`nurture-topics`, services/operator/topics.py, is the command).

Brokers run with auto-creation off, so every topic is created here with its partition count and
retention. Names take the configurable prefix `NURTURE_TOPIC_PREFIX`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_admin

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    retention_ms: int
    description: str


SPECS = (
    TopicSpec("nurture.events.v1", 30 * DAY_MS, "CloudEvents from ingest and dispatch outcomes"),
    TopicSpec("nurture.scored-events.v1", 30 * DAY_MS, "events + score snapshot, from scoring"),
    TopicSpec("nurture.dispatch.v1", 14 * DAY_MS, "dispatch commands, from the orchestrator"),
    TopicSpec("nurture.stages.v1", 90 * DAY_MS, "lifecycle stage changes, from the orchestrator"),
    TopicSpec("nurture.deadletter.v1", 90 * DAY_MS, "records no consumer could process"),
)


@dataclass(frozen=True)
class Topics:
    """Topic names with the environment's prefix applied (computed once, read as attributes)."""

    prefix: str = ""
    events: str = field(init=False)
    scored_events: str = field(init=False)
    dispatch: str = field(init=False)
    stages: str = field(init=False)
    deadletter: str = field(init=False)

    def __post_init__(self) -> None:
        for attribute, spec in zip(_ATTRIBUTES, SPECS, strict=True):
            object.__setattr__(self, attribute, f"{self.prefix}{spec.name}")


_ATTRIBUTES = ("events", "scored_events", "dispatch", "stages", "deadletter")  # as in SPECS


async def create_topic(admin: AIOKafkaAdminClient, topic: NewTopic) -> bool:
    """Create one topic: True if this call created it, False if it existed already. Any other
    error of the broker is raised (aiokafka returns per-topic errors in the response instead of
    raising them, so they must be read from it)."""
    response = await admin.create_topics([topic])
    for entry in response.topic_errors:  # (name, error code[, message])
        code = entry[1]
        if code == TopicAlreadyExistsError.errno:
            return False
        if code != 0:
            message = entry[2] if len(entry) > 2 and entry[2] else topic.name
            raise for_code(code)(f"creating topic {topic.name}: {message}")
    return True


async def ensure_topics(
    settings: KafkaSettings, *, partitions: int, replication_factor: int = 1
) -> list[str]:
    """Create every topic that does not exist yet; return the names created. Idempotent."""
    admin = make_admin(settings, client_id="nurture-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=f"{settings.topic_prefix}{spec.name}",
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs={"retention.ms": str(spec.retention_ms)},
            )
            for spec in SPECS
            if f"{settings.topic_prefix}{spec.name}" not in existing
        ]
        # already there: another replica was first, or the broker's topic list was behind
        return [topic.name for topic in wanted if await create_topic(admin, topic)]
    finally:
        await admin.close()


class TopicMissing(Exception):
    """A topic the service consumes does not exist (yet)."""


async def partition_count(settings: KafkaSettings, topic: str) -> int:
    admin = make_admin(settings, client_id="nurture-topics")
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code") or not described.get("partitions"):
        raise TopicMissing(f"topic '{topic}' does not exist; create it with `nurture-topics`")
    return len(described["partitions"])


async def wait_for_partitions(settings: KafkaSettings, topic: str) -> int:
    """The partition count of `topic`, waiting (with backoff, logging why) until the broker is
    reachable and the topic exists: a consumer started before its topics waits, not crash-loops."""
    retrying = AsyncRetrying(
        wait=wait_exponential(multiplier=0.5, max=10),
        retry=retry_if_exception_type((KafkaError, TopicMissing, OSError)),
        before_sleep=lambda state: log.warning(
            "waiting for topic", extra={"topic": topic, "attempt": state.attempt_number,
                                        "reason": str(state.outcome.exception()) if state.outcome
                                        else ""}),
    )
    async for attempt in retrying:
        with attempt:
            return await partition_count(settings, topic)
    raise AssertionError("unreachable")  # pragma: no cover
