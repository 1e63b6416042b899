"""The chart's extension points, in the names teams know from widely used charts, on every
workload; and the chart as the subchart of an umbrella chart (with and without globals)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart_support import CHART, SERVICES, component, render, workloads


def extensions(service: str) -> dict[str, Any]:
    return {service: {
        "podLabels": {"team": "growth"},
        "priorityClassName": "business-critical",
        "extraEnvVars": [{"name": "FROM_SECRET",
                          "valueFrom": {"secretKeyRef": {"name": "vault-env", "key": "k"}}}],
        "extraEnvVarsCM": "site-env", "extraEnvVarsSecret": "site-secrets",
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        "initContainers": [{"name": "wait-for-db", "image": "busybox:1.36", "command": ["true"]}],
        "sidecars": [{"name": "log-shipper", "image": "shipper:1.0"}],
        "customLivenessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 7},
    }}


@pytest.mark.parametrize("service", SERVICES)
def test_every_workload_takes_the_extension_points(service: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(extensions(service)))
    (doc,) = [d for d in workloads(render(values)) if component(d) == service]
    pod = doc["spec"]["template"]
    spec, main = pod["spec"], pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["team"] == "growth"
    assert "team" not in doc["spec"]["selector"]["matchLabels"]
    assert spec["priorityClassName"] == "business-critical"
    assert {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "vault-env",
                                                                  "key": "k"}}} in main["env"]
    assert main["envFrom"] == [{"configMapRef": {"name": "site-env"}},
                               {"secretRef": {"name": "site-secrets"}}]
    assert {"name": "extra", "emptyDir": {}} in spec["volumes"]
    assert {"name": "extra", "mountPath": "/extra"} in main["volumeMounts"]
    assert [c["name"] for c in spec["initContainers"]][-1] == "wait-for-db"
    assert [c["name"] for c in spec["containers"]] == [main["name"], "log-shipper"]
    assert main["livenessProbe"] == {"tcpSocket": {"port": 9999}, "periodSeconds": 7}
    assert "httpGet" in main["readinessProbe"]  # the others keep the chart's


def test_without_extensions_nothing_is_added() -> None:
    for doc in workloads(render()):
        spec, main = doc["spec"]["template"]["spec"], doc["spec"]["template"]["spec"][
            "containers"][0]
        assert "priorityClassName" not in spec and "envFrom" not in main
        assert len(spec["containers"]) == 1


def umbrella(tmp_path: Path, values: dict[str, Any]) -> Path:
    """An umbrella chart with this chart in its charts/ folder, as `helm dependency build`
    leaves it."""
    root = tmp_path / "umbrella"
    shutil.copytree(CHART, root / "charts" / "nurture", symlinks=False)
    (root / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "nurture", "version": yaml.safe_load(
            (CHART / "Chart.yaml").read_text())["version"]}]}))
    (root / "values.yaml").write_text(yaml.safe_dump(values))
    return root


def images(docs: list[dict[str, Any]]) -> set[str]:
    return {c["image"] for d in workloads(docs)
            for c in d["spec"]["template"]["spec"]["containers"]}


def test_the_chart_works_as_a_subchart_with_and_without_globals(tmp_path: Path) -> None:
    plain = render(chart=umbrella(tmp_path / "a", {}), release="platform")
    assert images(plain) == {"ghcr.io/nurture-project/nurture:0.1.0"}
    mirrored = render(chart=umbrella(tmp_path / "b", {
        "global": {"imageRegistry": "mirror.example.com", "team": "platform"},
        "nurture": {"ingest": {"replicas": 3}}}), release="platform")
    assert images(mirrored) == {"mirror.example.com/nurture-project/nurture:0.1.0"}
    (ingest,) = [d for d in workloads(mirrored) if component(d) == "ingest"]
    assert ingest["spec"]["replicas"] == 3


def test_image_registry_and_a_global_registry(tmp_path: Path) -> None:
    own = render(sets=("image.registry=registry.example.com/ghcr",))
    assert images(own) == {"registry.example.com/ghcr/nurture-project/nurture:0.1.0"}
    both = render(sets=("image.registry=registry.example.com",
                        "global.imageRegistry=mirror.example.com"))
    assert images(both) == {"mirror.example.com/nurture-project/nurture:0.1.0"}


def test_ingest_can_read_its_api_keys_from_the_mounted_secret() -> None:
    (ingest,) = [d for d in workloads(render(sets=("ingest.apiKeysFromFile=true",)))
                 if component(d) == "ingest"]
    spec = ingest["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert "NURTURE_INGEST_API_KEYS" not in env
    path = env["NURTURE_INGEST_API_KEYS_FILE"]["value"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "api-keys"]
    assert path == f"{mount['mountPath']}/keys.json" and "subPath" not in mount  # updates
    (volume,) = [v for v in spec["volumes"] if v["name"] == "api-keys"]
    assert volume["secret"] == {"secretName": "nurture-ingest",
                                "items": [{"key": "api-keys", "path": "keys.json"}]}
