"""The chart installed into a real Kubernetes API server (kube-apiserver built from the Go module
proxy, on Debian's etcd: deploy/local/kube.py), in namespaces that enforce the restricted Pod
Security standard.

The server validates every object against its OpenAPI schema and the CRDs, and runs Pod Security
admission; it runs no controllers, so the chart's migration hook Job is judged as a Pod and then
marked succeeded by the test (tests/deploy/cluster_support.py: HookJobs)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from deploy.local import tools
from deploy.local.kube import ApiServer
from tests.deploy.chart_support import ALL_FEATURES, CHART, SERVICES
from tests.deploy.cluster_support import (
    HookJobs,
    admit_pod,
    install_crds,
    ok,
    pod_security_warnings,
    restricted_namespace,
    run_helm,
    stored_workloads,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(home=tmp_path_factory.mktemp("kube")) as api:
        yield api


@pytest.fixture(scope="module")
def crds(server: ApiServer) -> list[str]:
    return install_crds(server)


def install(server: ApiServer, *args: str, namespace: str | None = None,
            ) -> tuple[str, HookJobs, Any]:
    """`helm install` into a new restricted namespace, hook Jobs served; (namespace, hooks,
    the helm process)."""
    ns = restricted_namespace(server, namespace or f"nurture-{uuid.uuid4().hex[:8]}")
    with HookJobs(server, ns).running() as hooks:
        proc = run_helm(server, "install", "nurture", str(CHART), "--namespace", ns,
                        "--timeout", "120s", *args)
    return ns, hooks, proc


def assert_installed(proc: Any, hooks: HookJobs) -> None:
    assert proc.returncode == 0, proc.stderr
    assert pod_security_warnings(proc) == [], proc.stderr
    assert hooks.refused == {}
    assert len(hooks.completed) == 1, "the migration hook ran once"


def assert_pods_admitted(server: ApiServer, ns: str) -> dict[str, Any]:
    found = stored_workloads(server, ns)
    for name, workload in found.items():
        status, message = admit_pod(server, ns, workload)
        assert status == 201, f"{name}: {message}"
    return found


def test_the_api_server_is_the_pinned_build(server: ApiServer) -> None:
    version = ok(server, "GET", "/version")
    assert version["gitVersion"] == tools.KUBE_VERSION
    assert (version["major"], version["minor"]) == tuple(
        tools.KUBE_VERSION.removeprefix("v").split(".")[:2])


def test_install_with_defaults_under_restricted_pod_security(server: ApiServer) -> None:
    ns, hooks, proc = install(server)
    assert_installed(proc, hooks)
    found = assert_pods_admitted(server, ns)
    assert {f"Deployment/nurture-{s}" for s in SERVICES} <= set(found)
    release = run_helm(server, "status", "nurture", "--namespace", ns, "-o", "json")
    assert '"status":"deployed"' in release.stdout.replace(" ", ""), release.stderr


def test_install_with_scaling_and_monitoring_features(server: ApiServer, crds: list[str],
                                                       ) -> None:
    ns, hooks, proc = install(server, "-f", str(ALL_FEATURES))
    assert_installed(proc, hooks)
    assert_pods_admitted(server, ns)
    for api, plural in (("keda.sh/v1alpha1", "scaledobjects"),
                        ("monitoring.coreos.com/v1", "servicemonitors"),
                        ("monitoring.coreos.com/v1", "podmonitors"),
                        ("monitoring.coreos.com/v1", "prometheusrules"),
                        ("kafka.strimzi.io/v1beta2", "kafkatopics"),
                        ("kafka.strimzi.io/v1beta2", "kafkausers")):
        items = ok(server, "GET", f"/apis/{api}/namespaces/{ns}/{plural}")["items"]
        assert items, f"no {plural} stored"
    assert "StatefulSet/nurture-scoring" in stored_workloads(server, ns)


def test_upgrade_to_the_rocksdb_statefulset(server: ApiServer) -> None:
    ns, hooks, proc = install(server)
    assert_installed(proc, hooks)
    with HookJobs(server, ns).running() as upgrade_hooks:
        upgraded = run_helm(server, "upgrade", "nurture", str(CHART), "--namespace", ns,
                            "--timeout", "120s", "--reuse-values",
                            "--set", "scoring.store=rocksdb")
    assert_installed(upgraded, upgrade_hooks)
    found = assert_pods_admitted(server, ns)
    assert "StatefulSet/nurture-scoring" in found
    assert "Deployment/nurture-scoring" not in found
    claims = found["StatefulSet/nurture-scoring"]["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["state"]


def test_a_pod_security_violation_is_reported_and_refused(server: ApiServer) -> None:
    """The checks above can fail: a hostPath volume (added through the chart's own extension
    point) is warned about by helm's API calls and refused for the Pod."""
    ns, _, proc = install(
        server, "--set-json", 'ingest.extraVolumes=[{"name":"host","hostPath":{"path":"/"}}]')
    assert proc.returncode == 0, proc.stderr
    warnings = pod_security_warnings(proc)
    assert len(warnings) == 1 and "hostPath" in warnings[0], proc.stderr
    ingest = stored_workloads(server, ns)["Deployment/nurture-ingest"]
    status, message = admit_pod(server, ns, ingest)
    assert status == 403 and "hostPath" in message
