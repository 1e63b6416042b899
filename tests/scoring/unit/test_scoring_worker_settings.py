"""The worker's producer batching setting: read from the environment (a bad value names the
variable) and handed to faust in seconds."""

from __future__ import annotations

import pytest

from services.common.config.settings import KafkaSettings, load
from services.common.errors import ConfigError
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.scoring.adapters.faust_app import create_app
from services.scoring.metrics import ScoringMetrics
from services.scoring.service_layer.handlers import Processor
from services.scoring.settings import ScoringSettings


def test_producer_linger_reaches_faust_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_SCORING_PRODUCER_LINGER_MS", "20")
    settings = load(ScoringSettings)
    kafka = KafkaSettings(NURTURE_TOPIC_PREFIX="lingertest.")
    app = create_app(settings, kafka, Processor([], Topics("lingertest.")),
                     ScoringMetrics(new_registry()), partitions=2)
    assert app.conf.producer_linger == pytest.approx(0.02)
    monkeypatch.delenv("NURTURE_SCORING_PRODUCER_LINGER_MS")
    assert load(ScoringSettings).producer_linger_ms == 5.0


@pytest.mark.parametrize("value", ["-1", "1001", "soon"])
def test_a_bad_linger_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NURTURE_SCORING_PRODUCER_LINGER_MS", value)
    with pytest.raises(ConfigError, match="NURTURE_SCORING_PRODUCER_LINGER_MS"):
        load(ScoringSettings)
