"""What the end-to-end tests share: topics of their own on the session's broker, and a scoring
worker with the integration model (`tests/scoring/integration/test_worker.py` `MODEL`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.config.settings import KafkaSettings
from tests.scoring.integration.test_worker import MODEL
from tests.support import ScoringWorker, isolated_kafka, scoring_worker


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return await isolated_kafka(kafka_bootstrap)


@pytest.fixture
async def scorer(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[ScoringWorker]:
    async with scoring_worker(kafka, tmp_path, MODEL) as worker:
        yield worker
