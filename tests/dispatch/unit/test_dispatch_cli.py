"""`nurture-dispatch`: --help lists the environment, bad settings stop start-up naming the
variable, `check` validates the shipped templates against the shipped programs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("NURTURE_", "DATABASE_URL", "KAFKA_"))}
    return subprocess.run([sys.executable, "-m", "services.dispatch", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=clean | env,
                          check=False)


def test_help_lists_the_environment() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in ("DATABASE_URL", "NURTURE_DISPATCH_DB_SCHEMA", "NURTURE_DISPATCH_SMTP_HOST",
                 "NURTURE_DISPATCH_TRACKING_BASE_URL", "NURTURE_TRACKING_SECRET",
                 "NURTURE_DISPATCH_WEBHOOK_SECRET", "NURTURE_DISPATCH_MAX_ATTEMPTS"):
        assert name in proc.stdout


@pytest.mark.parametrize(("env", "named"), [
    ({}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql+asyncpg://u@h/db", "NURTURE_DISPATCH_SMTP_SECURITY": "ssl"},
     "NURTURE_DISPATCH_SMTP_SECURITY"),
    ({"DATABASE_URL": "postgresql+asyncpg://u@h/db", "NURTURE_DISPATCH_SMS_FROM": "+1555"},
     "NURTURE_DISPATCH_SMS_AUTH_TOKEN"),
    ({"DATABASE_URL": "postgresql+asyncpg://u@h/db", "NURTURE_TRACKING_SECRET": "short"},
     "NURTURE_TRACKING_SECRET"),
    ({"DATABASE_URL": "postgresql+asyncpg://u@h/db", "NURTURE_DISPATCH_TEMPLATES": "/nowhere"},
     "NURTURE_DISPATCH_TEMPLATES"),
    ({"DATABASE_URL": "postgresql+asyncpg://u@h/db", "NURTURE_DISPATCH_WEBHOOK_SECRET": "short"},
     "NURTURE_DISPATCH_WEBHOOK_SECRET"),
    ({"DATABASE_URL": "postgresql+asyncpg://u@h/db",
      "NURTURE_DISPATCH_WEBHOOK_SECRET": "whsec_***"}, "NURTURE_DISPATCH_WEBHOOK_SECRET"),
])
def test_bad_settings_stop_start_up_naming_the_variable(env: dict[str, str],
                                                        named: str) -> None:
    proc = run("serve", **env)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_passes_on_the_shipped_templates_and_programs() -> None:
    proc = run("check")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")
