from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.clock import ControllableClock, SystemClock
from services.common.config.settings import KafkaSettings, load
from services.common.errors import ConfigError
from services.ingest.settings import IngestSettings


def test_bad_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_INGEST_PORT", "eighty")
    monkeypatch.setenv("NURTURE_INGEST_API_KEYS", '[{"name": "a", "sha256": "' + "0" * 64 + '"}]')
    with pytest.raises(ConfigError, match="NURTURE_INGEST_PORT"):
        load(IngestSettings)


def test_missing_api_keys_is_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NURTURE_INGEST_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match=r"NURTURE_INGEST_API_KEYS: .*at least one API key"):
        load(IngestSettings)


def test_aliased_variable_is_named_by_its_own_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_TOPIC_PREFIX", "bad prefix")
    with pytest.raises(ConfigError, match=r"^invalid configuration:\n  NURTURE_TOPIC_PREFIX:"):
        load(KafkaSettings)


def test_kafka_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    monkeypatch.setenv("NURTURE_TOPIC_PREFIX", "staging.")
    settings = load(KafkaSettings)
    assert settings.bootstrap_servers == "b1:9092,b2:9092"
    assert settings.topic_prefix == "staging."


def test_controllable_clock_moves_only_forward_when_told() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = ControllableClock(start)
    assert clock.now() == start
    assert clock.advance(timedelta(days=90)) == start + timedelta(days=90)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 1, 1))


def test_system_clock_is_utc_aware() -> None:
    assert SystemClock().now().tzinfo is UTC
