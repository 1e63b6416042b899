"""The Prometheus alert rules: valid (promtool check rules), behaving as their unit tests say
(promtool test rules), documented, and built only on metrics the services export."""

from __future__ import annotations

import subprocess

import yaml

from tests.observability.catalogue import ALERTS, OBS, exported_names, metric_names, promtool


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool()), *args], capture_output=True, text=True,
                          check=False, timeout=120, cwd=ALERTS.parent)


def test_promtool_accepts_the_rules() -> None:
    result = run("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_unit_tests_pass() -> None:
    result = run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_local_scrape_config_is_valid() -> None:
    result = run("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_documented_and_uses_exported_metrics() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"NurtureConsumerLagGrowing", "NurtureDeadLetters", "NurtureSendFailures",
            "NurtureTimersLate", "NurtureServiceDown"} <= names
    tests = yaml.safe_load((OBS / "prometheus" / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
              if case["exp_alerts"]}
    assert names == tested, f"alerts no test sees firing: {names - tested}"
    exported = exported_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        used = metric_names(rule["expr"])
        if rule["alert"] == "NurtureServiceDown":  # Prometheus's own `up`, per job
            assert not used and "up{job=" in rule["expr"]
            continue
        assert used and used <= exported.keys(), (rule["alert"], used - exported.keys())
