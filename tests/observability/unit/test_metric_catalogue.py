"""Every service's metrics: Prometheus naming (`nurture_` prefix, base units, promtool's
lint), no label that could identify a person, and each one documented in
docs/observability.md."""

from __future__ import annotations

import subprocess

import pytest

from services.common.metrics import exposition
from tests.observability.catalogue import ROOT, promtool, registries

FORBIDDEN_LABELS = {"lead", "lead_id", "subject", "email", "phone", "address", "message_id",
                    "user", "user_id", "name", "url"}
SERVICES = ("ingest", "scoring", "orchestrator", "dispatch")


@pytest.mark.parametrize("service", SERVICES)
def test_names_and_labels(service: str) -> None:
    families = list(registries()[service].collect())
    assert families
    for family in families:
        assert family.name.startswith("nurture_"), family.name
        assert family.documentation.strip(), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
    labels = {name: set(registries()[service]._names_to_collectors[name]._labelnames)  # type: ignore[attr-defined]
              for name in registries()[service]._names_to_collectors}  # type: ignore[attr-defined]
    for name, names in labels.items():
        assert not names & FORBIDDEN_LABELS, (name, names & FORBIDDEN_LABELS)


@pytest.mark.parametrize("service", SERVICES)
def test_promtool_lints_the_exposition(service: str) -> None:
    body, _ = exposition(registries()[service])
    result = subprocess.run([str(promtool()), "check", "metrics"], input=body.decode(),
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    missing = sorted(family.name for registry in registries().values()
                     for family in registry.collect() if f"`{family.name}" not in doc)
    assert not missing, f"not in docs/observability.md: {missing}"
