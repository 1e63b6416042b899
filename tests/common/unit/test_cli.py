"""Every command answers --help, and a bad setting stops start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import run_to_a_gone_reader

COMMANDS = ["services.ingest", "services.scoring", "services.orchestrator", "services.dispatch",
            "services.operator.topics", "services.operator.dlq", "services.operator"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module: str) -> None:
    proc = run(module, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: nurture-")


@pytest.mark.parametrize("command", ["topics", "dlq", "tail", "explain"])
def test_every_operator_command_answers_help(command: str) -> None:
    proc = run("services.operator", command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: nurture-ops {command}")


SETTINGS = {  # the settings classes each service reads
    "services.ingest": ("services.ingest.settings:IngestSettings",
                        "services.common.tracking:TrackingSettings"),
    "services.scoring": ("services.scoring.settings:ScoringSettings",),
    "services.orchestrator": ("services.orchestrator.settings:OrchestratorSettings",),
    "services.dispatch": ("services.dispatch.settings:DispatchSettings",
                          "services.common.tracking:TrackingSettings"),
}
SHARED = ("services.common.config.settings:KafkaSettings",
          "services.common.config.settings:LogSettings")


@pytest.mark.parametrize("module", sorted(SETTINGS))
def test_help_lists_every_setting_with_its_description(module: str) -> None:
    import importlib

    from services.common.config.settings import env_name

    text = " ".join(run(module, "--help").stdout.split())  # unwrapped
    for ref in SETTINGS[module] + SHARED:
        where, name = ref.split(":")
        cls = getattr(importlib.import_module(where), name)
        for field, info in cls.model_fields.items():
            assert info.description, f"{name}.{field} has no description"
            line = f"{env_name(cls, field)} ("
            assert line in text, f"{env_name(cls, field)} missing from {module} --help"
            assert " ".join(info.description.split()) in text, field


def test_ingest_refuses_to_start_without_api_keys_and_names_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_")}
    proc = run("services.ingest", "serve", env=env)
    assert proc.returncode == 2
    assert "NURTURE_INGEST_API_KEYS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_keygen_prints_a_key_whose_hash_is_the_config_entry() -> None:
    import hashlib
    import json

    proc = run("services.ingest", "keygen", "--name", "site", "--source", "https://a.example/*")
    assert proc.returncode == 0
    key_line, entry_line = proc.stdout.strip().splitlines()
    key = key_line.rsplit(" ", 1)[1]
    (entry,) = json.loads(entry_line.split(": ", 1)[1])
    assert entry == {"name": "site", "sha256": hashlib.sha256(key.encode()).hexdigest(),
                     "sources": ["https://a.example/*"], "types": ["*"]}


def test_scoring_worker_refuses_an_invalid_model_naming_file_and_line(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.yaml"
    bad.write_text("id: m\nversion: 1\nhalf_life: 30days\nthresholds: {mql: 10}\n")
    env = {**os.environ, "NURTURE_SCORING_MODELS": str(bad)}
    proc = run("services.scoring", "worker", env=env)
    assert proc.returncode == 2
    assert f"{bad}:3: half_life:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_backtest_whose_reader_stops_early_ends_quietly() -> None:
    event = (b'{"specversion": "1.0", "id": "e1", "source": "s", "type": "web.page_viewed", '
             b'"subject": "lead-1", "time": "2026-11-01T10:00:00Z", '
             b'"data": {"url": "https://x.io/pricing", "path": "/pricing"}}\n')
    code, err = run_to_a_gone_reader("services.scoring", "backtest", "--model",
                                     "config/scoring/b2b.yaml", "--events", "-", stdin=event)
    assert (code, "Traceback" in err) == (0, False), err
