"""Every service's metrics: Prometheus naming (`nurture_` prefix, base units, promtool's
lint), no label that could identify a person, and each one documented in
docs/observability.md."""

from __future__ import annotations

import subprocess

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.observability.metrics import exposition
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


def exercise(registry: CollectorRegistry) -> CollectorRegistry:
    """Every metric of `registry` given a sample (labelled ones with one label set), so the
    exposition promtool lints has every family's series, not just their HELP and TYPE."""
    collectors = {id(c): c for c in registry._names_to_collectors.values()}  # type: ignore[attr-defined]
    for collector in collectors.values():
        names = collector._labelnames
        metric = collector.labels(*(f"x{i}" for i in range(len(names)))) if names else collector
        if isinstance(metric, Counter):
            metric.inc()
        elif isinstance(metric, Histogram):
            metric.observe(0.3)
        elif isinstance(metric, Gauge):
            metric.set(2)
    return registry


@pytest.mark.parametrize("service", SERVICES)
def test_promtool_lints_the_exposition(service: str) -> None:
    registry = exercise(registries()[service])
    for family in registry.collect():  # every family has series to lint
        assert [s for s in family.samples if s.value], family.name
    body, _ = exposition(registry)
    result = subprocess.run([str(promtool()), "check", "metrics"], input=body.decode(),
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    missing = sorted(family.name for registry in registries().values()
                     for family in registry.collect() if f"`{family.name}" not in doc)
    assert not missing, f"not in docs/observability.md: {missing}"
