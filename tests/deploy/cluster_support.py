"""Installing the chart into the real API server of deploy/local/kube.py: namespaces under the
restricted Pod Security standard, the custom resource definitions built from the schemas in
deploy/helm/crd-schemas, helm pointed at the server, and a stand-in for the Job controller so
that the chart's pre-install hook can finish (the server runs no controllers and no kubelet)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deploy.local.kube import ApiServer
from tests.deploy.chart_support import CHART, CRD_SCHEMA_FILES, crd_schema, helm

RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted"
              for mode in ("enforce", "warn", "audit")}
POD_SECURITY_WARNING = "would violate PodSecurity"
WORKLOADS = {"Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
             "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
             "Job": "/apis/batch/v1/namespaces/{ns}/jobs"}


def ok(server: ApiServer, method: str, path: str,
       body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    status, answer = server.request(method, path, body, **kw)
    if status >= 300:
        raise AssertionError(f"{method} {path} -> {status}: {answer.get('message', answer)}")
    return answer


def until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def restricted_namespace(server: ApiServer, name: str) -> str:
    """A namespace enforcing the restricted standard, with the `default` ServiceAccount that a
    cluster's service-account controller would add (pods that name no account use it)."""
    ok(server, "POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": RESTRICTED}})
    ok(server, "POST", f"/api/v1/namespaces/{name}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    return name


def _structural(schema: Any) -> Any:
    """The catalog's schemas add `additionalProperties: false` next to `properties` (strict
    validation for offline tools); a CRD's structural schema may not have both, and the API
    server prunes unknown fields instead."""
    if isinstance(schema, dict):
        return {key: _structural(value) for key, value in schema.items()
                if not (key == "additionalProperties" and value is False
                        and "properties" in schema)}
    if isinstance(schema, list):
        return [_structural(item) for item in schema]
    return schema


def crd(api_version: str, kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    group, version = api_version.split("/")
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                           "listKind": f"{kind}List"},
                 "versions": [{"name": version, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": _structural(schema)}}]}}


def install_crds(server: ApiServer) -> list[str]:
    """Every CRD the chart's optional features need, established; their names."""
    names = []
    for api_version, kind in CRD_SCHEMA_FILES:
        body = crd(api_version, kind, crd_schema(api_version, kind))
        ok(server, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
        names.append(body["metadata"]["name"])
    for name in names:
        until(f"CRD {name} established", lambda name=name: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in ok(server, "GET", "/apis/apiextensions.k8s.io/v1/"
                        f"customresourcedefinitions/{name}").get("status", {})
            .get("conditions", [])))
    return names


def run_helm(server: ApiServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(server.kubeconfig), HELM_CACHE_HOME=str(
        server.home / "helm-cache"), HELM_CONFIG_HOME=str(server.home / "helm-config"),
        HELM_DATA_HOME=str(server.home / "helm-data"))
    return subprocess.run([helm(), *args], cwd=CHART, env=env, capture_output=True, text=True,
                          check=False, timeout=300)


def pod_security_warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if POD_SECURITY_WARNING in line]


def stored_workloads(server: ApiServer, namespace: str) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> the object, for every Deployment, StatefulSet and Job in the namespace."""
    found = {}
    for kind, path in WORKLOADS.items():
        for item in ok(server, "GET", path.format(ns=namespace))["items"]:
            found[f"{kind}/{item['metadata']['name']}"] = item
    return found


def admit_pod(server: ApiServer, namespace: str, workload: dict[str, Any]) -> tuple[int, str]:
    """Create (dry run) the Pod a workload's controller would create: the namespace's enforced
    Pod Security level judges it. (status, message)."""
    name, template = workload["metadata"]["name"], workload["spec"]["template"]
    spec = dict(template["spec"])
    # a StatefulSet's controller adds one claim volume per volumeClaimTemplate
    claims = [{"name": claim["metadata"]["name"], "persistentVolumeClaim": {
        "claimName": f"{claim['metadata']['name']}-{name}-0"}}
        for claim in workload["spec"].get("volumeClaimTemplates", [])]
    spec["volumes"] = [*spec.get("volumes", []), *claims]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": f"{name}-",
                        "labels": template["metadata"].get("labels", {})},
           "spec": spec}
    status, answer = server.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", pod)
    return status, str(answer.get("message", ""))


@dataclass
class HookJobs:
    """Stands in for the Job controller and a kubelet for the chart's hook Jobs: each Job that
    appears is judged as a Pod by admission (Pod Security among it) and marked succeeded through
    its status subresource if admitted, failed if not (so `helm install` goes on or fails at
    once). Records what it saw."""

    server: ApiServer
    namespace: str
    completed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _complete(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        status, message = admit_pod(self.server, self.namespace, job)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if status >= 300:
            self.refused[name] = message
            outcome = {"failed": 1, "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now, "reason": "Refused",
                 "message": message[:500]} for t in ("FailureTarget", "Failed")]}
        else:
            self.completed.append(f"{name}@{job['metadata']['uid']}")
            outcome = {"completionTime": now, "succeeded": 1, "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("SuccessCriteriaMet", "Complete")]}
        ok(self.server, "PATCH",
           f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}/status",
           {"status": {"startTime": now, **outcome}},
           content_type="application/merge-patch+json")

    def _run(self) -> None:
        seen: set[str] = set()
        while not self._stop.is_set():
            jobs = ok(self.server, "GET", f"/apis/batch/v1/namespaces/{self.namespace}/jobs")
            for job in jobs["items"]:
                if job["metadata"]["uid"] not in seen:
                    seen.add(job["metadata"]["uid"])
                    self._complete(job)
            self._stop.wait(0.2)

    @contextmanager
    def running(self) -> Iterator[HookJobs]:
        thread = threading.Thread(target=self._run, name=f"hook-jobs-{self.namespace}",
                                  daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)
            self._stop.clear()
