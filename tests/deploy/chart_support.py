"""Rendering the Helm chart for the deploy tests: helm from deploy/local/tools.py (built once into
.local/tools/), manifests parsed into dicts, and the services' real setting names."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from deploy.local import tools
from services.common.config.settings import (
    ClockSettings,
    KafkaSettings,
    LogSettings,
    env_name,
)
from services.common.tracking import TrackingSettings
from services.dispatch.settings import DispatchSettings
from services.ingest.settings import IngestSettings
from services.orchestrator.settings import OrchestratorSettings
from services.scoring.settings import ScoringSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "nurture"
ALL_FEATURES = CHART / "ci" / "all-features-values.yaml"
CRD_SCHEMAS = ROOT / "deploy" / "helm" / "crd-schemas"
# the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one
KUBE_VERSIONS = ("1.29.0", "1.34.0")
RENDER_KUBE_VERSION = "1.31.0"
SERVICES = ("ingest", "scoring", "orchestrator", "dispatch")

# custom resources and the CRD schema (deploy/helm/crd-schemas) each is validated against
CRD_SCHEMA_FILES = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafka.strimzi.io/kafkatopic_v1beta2.json",
    ("kafka.strimzi.io/v1beta2", "KafkaUser"): "kafka.strimzi.io/kafkauser_v1beta2.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh/triggerauthentication_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com/podmonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com/prometheusrule_v1.json",
}

SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    ClockSettings, KafkaSettings, LogSettings, TrackingSettings, IngestSettings,
    ScoringSettings, OrchestratorSettings, DispatchSettings)


@cache
def helm() -> str:
    return str(tools.helm())


def run_helm(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], cwd=chart, capture_output=True, text=True,
                          check=False, timeout=300)


def render(*values: Path, sets: tuple[str, ...] = (), chart: Path = CHART,
           release: str = "nurture") -> list[dict[str, Any]]:
    """`helm template` with these values files and --set pairs; the parsed manifests."""
    args = ["template", release, str(chart), "--namespace", "nurture",
            "--kube-version", RENDER_KUBE_VERSION]
    for path in values:
        args += ["-f", str(path)]
    for pair in sets:
        args += ["--set", pair]
    proc = run_helm(*args, chart=chart)
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(*sets: str) -> str:
    """The error of a render that must fail (empty when it succeeded)."""
    args = ["template", "nurture", str(CHART), "--kube-version", RENDER_KUBE_VERSION]
    for pair in sets:
        args += ["--set", pair]
    proc = run_helm(*args)
    return proc.stderr if proc.returncode != 0 else ""


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def known_env_names() -> set[str]:
    """Every environment variable the services' settings classes read."""
    names = {"DATABASE_URL"}
    for cls in SETTINGS_CLASSES:
        names |= {env_name(cls, field) for field in cls.model_fields}
    return names


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (CRD_SCHEMAS / CRD_SCHEMA_FILES[(api_version, kind)]).read_text())
    return schema
