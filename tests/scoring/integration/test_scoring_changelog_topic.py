"""The scoring worker creates its table's changelog topic itself, compacted, with the input's
partition count, before faust starts (faust alone sometimes skipped it when two workers started
together on a fresh cluster)."""

from __future__ import annotations

import faust
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.config.settings import KafkaSettings
from services.common.kafka.clients import make_admin
from services.scoring.adapters.faust_app import ensure_changelog
from tests.support import isolated_kafka, unique


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


async def test_the_changelog_is_created_compacted_once(kafka: KafkaSettings) -> None:
    app = faust.App(unique("scoring-app"), broker=f"kafka://{kafka.bootstrap_servers}")
    app.Table("lead-state", partitions=3, default=None)
    name = await ensure_changelog(app, kafka, partitions=3, replication_factor=1)
    assert name == await ensure_changelog(app, kafka, partitions=3, replication_factor=1)
    assert name.endswith("-lead-state-changelog")
    admin = make_admin(kafka, client_id="t")
    await admin.start()
    try:
        (meta,) = await admin.describe_topics([name])
        assert len(meta["partitions"]) == 3
        (config,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = {e[0]: e[1] for e in config.resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
    finally:
        await admin.close()
