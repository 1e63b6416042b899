"""The orchestrator's tokens: an empty one is no token, and the admin and enrollment tokens are
tokens of their own (start-up refuses them equal to the API token, naming the variable)."""

from __future__ import annotations

import pytest

from services.common.config.settings import load
from services.common.errors import ConfigError
from services.orchestrator.settings import OrchestratorSettings

URL = "postgresql+asyncpg://nurture@127.0.0.1:5432/nurture"


def test_an_empty_token_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    for name in ("API", "ADMIN", "ENROLLMENT", "SMS_AUTH"):
        monkeypatch.setenv(f"NURTURE_ORCHESTRATOR_{name}_TOKEN", "")
    settings = load(OrchestratorSettings)
    assert (settings.api_token, settings.admin_token, settings.enrollment_token,
            settings.sms_auth_token) == (None, None, None, None)


@pytest.mark.parametrize("name", ["ADMIN", "ENROLLMENT"])
def test_the_admin_and_enrollment_tokens_must_differ_from_the_api_token(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("NURTURE_ORCHESTRATOR_API_TOKEN", "the-same-token")
    monkeypatch.setenv(f"NURTURE_ORCHESTRATOR_{name}_TOKEN", "the-same-token")
    with pytest.raises(ConfigError) as caught:
        load(OrchestratorSettings)
    assert f"NURTURE_ORCHESTRATOR_{name}_TOKEN: " in str(caught.value)
    assert "must differ from NURTURE_ORCHESTRATOR_API_TOKEN" in str(caught.value)
    monkeypatch.setenv(f"NURTURE_ORCHESTRATOR_{name}_TOKEN", "another-token")
    assert load(OrchestratorSettings).api_token is not None


def test_the_retention_defaults_outlast_the_scored_events_topic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    settings = load(OrchestratorSettings)
    # nurture.scored-events.v1 keeps 30 days, and up to a 7-day segment more
    assert settings.retention_days == 40 > 30 + 7
    assert settings.prune_interval_seconds == 300
    monkeypatch.setenv("NURTURE_ORCHESTRATOR_RETENTION_DAYS", "0.002")
    assert load(OrchestratorSettings).retention_days == 0.002


@pytest.mark.parametrize("name", ["RETENTION_DAYS", "PRUNE_INTERVAL_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-0.5", "forever"])
def test_a_retention_or_interval_that_is_not_positive_stops_start_up(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv(f"NURTURE_ORCHESTRATOR_{name}", value)
    with pytest.raises(ConfigError, match=f"NURTURE_ORCHESTRATOR_{name}: "):
        load(OrchestratorSettings)
