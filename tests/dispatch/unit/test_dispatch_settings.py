"""Dispatch settings: the per-channel guarantee after the hand-off (the removed reconcile setting
stops start-up); retention: a positive number of days (fractions allowed, so a soak test
can keep minutes) and a positive prune interval; anything else stops start-up naming the
variable."""

from __future__ import annotations

import pytest

from services.common.config.settings import load
from services.common.errors import ConfigError
from services.dispatch.settings import DispatchSettings

URL = "postgresql+asyncpg://nurture@127.0.0.1:5432/nurture"


def test_the_defaults_outlast_the_dispatch_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    settings = load(DispatchSettings)
    # nurture.dispatch.v1 keeps 14 days, and up to a 7-day segment more
    assert settings.retention_days == 30 > 14 + 7
    assert settings.prune_interval_seconds == 300


def test_a_fraction_of_a_day_is_a_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("NURTURE_DISPATCH_RETENTION_DAYS", "0.002")
    monkeypatch.setenv("NURTURE_DISPATCH_PRUNE_INTERVAL_SECONDS", "5")
    settings = load(DispatchSettings)
    assert (settings.retention_days, settings.prune_interval_seconds) == (0.002, 5)


@pytest.mark.parametrize("name", ["RETENTION_DAYS", "PRUNE_INTERVAL_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-1", "a month"])
def test_a_retention_or_interval_that_is_not_positive_stops_start_up(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv(f"NURTURE_DISPATCH_{name}", value)
    with pytest.raises(ConfigError, match=f"NURTURE_DISPATCH_{name}: "):
        load(DispatchSettings)


@pytest.mark.parametrize(("env", "resent"), [
    ({}, {"crm_task", "webhook"}),
    ({"NURTURE_DISPATCH_GUARANTEE_EMAIL": "at-least-once",
      "NURTURE_DISPATCH_GUARANTEE_WEBHOOK": "at-most-once"}, {"email", "crm_task"}),
    ({"NURTURE_DISPATCH_GUARANTEE_SMS": "at-least-once",
      "NURTURE_DISPATCH_GUARANTEE_CRM_TASK": "at-most-once",
      "NURTURE_DISPATCH_GUARANTEE_WEBHOOK": "at-most-once"}, {"sms"}),
])
def test_each_channel_s_guarantee_decides_what_is_resent_after_the_hand_off(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], resent: set[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load(DispatchSettings).resend_unconfirmed == resent


def test_an_unknown_guarantee_stops_start_up_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("NURTURE_DISPATCH_GUARANTEE_SMS", "exactly-once")
    with pytest.raises(ConfigError, match="NURTURE_DISPATCH_GUARANTEE_SMS"):
        load(DispatchSettings)


def test_the_removed_reconcile_setting_stops_start_up_naming_its_replacement(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("NURTURE_DISPATCH_RECONCILE_CHANNELS", "")
    with pytest.raises(ConfigError, match="NURTURE_DISPATCH_GUARANTEE_EMAIL"):
        load(DispatchSettings)
