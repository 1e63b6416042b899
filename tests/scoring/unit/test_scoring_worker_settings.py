"""The worker's batching settings: read from the environment (a bad value names the variable),
and the record batches faust's producer builds large enough for a scoring batch's partition."""

from __future__ import annotations

import pytest

from services.common.config.settings import KafkaSettings, load
from services.common.errors import ConfigError
from services.common.kafka.clients import MAX_BATCH_BYTES
from services.common.kafka.topics import Topics
from services.common.observability.metrics import new_registry
from services.scoring.adapters.faust_app import create_app
from services.scoring.metrics import ScoringMetrics
from services.scoring.service_layer.handlers import Processor
from services.scoring.settings import ScoringSettings


def test_the_batch_settings_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_SCORING_BATCH_MAX", "20")
    monkeypatch.setenv("NURTURE_SCORING_BATCH_WAIT_MS", "2.5")
    settings = load(ScoringSettings)
    assert (settings.batch_max, settings.batch_wait_ms) == (20, 2.5)
    monkeypatch.delenv("NURTURE_SCORING_BATCH_MAX")
    monkeypatch.delenv("NURTURE_SCORING_BATCH_WAIT_MS")
    settings = load(ScoringSettings)
    assert (settings.batch_max, settings.batch_wait_ms) == (500, 5.0)


def test_the_producer_builds_record_batches_of_the_shared_size() -> None:
    kafka = KafkaSettings(NURTURE_TOPIC_PREFIX="batchtest.")  # type: ignore[call-arg]
    app = create_app(load(ScoringSettings), kafka, Processor([], Topics("batchtest.")),
                     ScoringMetrics(new_registry()), partitions=2)
    assert app.conf.producer_max_batch_size == MAX_BATCH_BYTES


@pytest.mark.parametrize(("variable", "value"), [
    ("NURTURE_SCORING_BATCH_WAIT_MS", "0"), ("NURTURE_SCORING_BATCH_WAIT_MS", "soon"),
    ("NURTURE_SCORING_BATCH_MAX", "0"), ("NURTURE_SCORING_BATCH_MAX", "10001")])
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                        value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load(ScoringSettings)
