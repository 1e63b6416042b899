"""The Helm chart, offline: helm lint --strict, helm template with the defaults and with every
optional feature on, core kinds validated against Kubernetes' schemas (kubernetes-validate,
strict), custom resources against their CRD schemas, and the chart's promises as policy tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi.routing import iter_route_contexts

from services.common.kafka.topics import SPECS
from services.scoring.entrypoints.probes import LIVE_PATH, READY_PATH
from tests.deploy.chart_support import (
    ALL_FEATURES,
    CHART,
    CRD_SCHEMA_FILES,
    KUBE_VERSIONS,
    ROOT,
    SERVICES,
    component,
    containers,
    crd_schema,
    known_env_names,
    pod_spec,
    render,
    render_error,
    run_helm,
    workloads,
)

SECRETISH = ("SECRET", "TOKEN", "PASSWORD", "API_KEYS", "DATABASE_URL")


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def all_docs() -> list[dict[str, Any]]:
    return render(ALL_FEATURES)


@pytest.fixture(scope="module", params=["default", "all-features"])
def docs(request: pytest.FixtureRequest, default_docs: list[dict[str, Any]],
         all_docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return default_docs if request.param == "default" else all_docs


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


@pytest.mark.parametrize("values", [[], ["-f", str(ALL_FEATURES)]], ids=["default", "all"])
def test_helm_lint_strict(values: list[str]) -> None:
    proc = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSIONS[0], *values)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_defaults_render_the_core_and_no_optional_custom_resources(
        default_docs: list[dict[str, Any]]) -> None:
    assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget",
            "NetworkPolicy", "ServiceAccount"} <= kinds(default_docs)
    assert not kinds(default_docs) & {"KafkaTopic", "KafkaUser", "ScaledObject",
                                      "ServiceMonitor", "PodMonitor", "Ingress", "StatefulSet"}
    assert sorted(component(d) for d in workloads(default_docs)) == sorted(SERVICES)


def test_every_optional_feature_renders(all_docs: list[dict[str, Any]]) -> None:
    assert {"KafkaTopic", "KafkaUser", "ScaledObject", "TriggerAuthentication",
            "ServiceMonitor", "PodMonitor", "Ingress", "StatefulSet",
            "HorizontalPodAutoscaler"} <= kinds(all_docs)


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_core_kinds_are_valid_kubernetes(docs: list[dict[str, Any]], kube: str) -> None:
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRD_SCHEMA_FILES]
    assert core
    for doc in core:
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc}") from None


CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def _check_jsonschema(docs: list[dict[str, Any]], folder: Path) -> subprocess.CompletedProcess[str]:
    """Run check-jsonschema on each custom resource against its CRD's openAPIV3 schema.

    Prometheus Operator's `^(?i)...` patterns are Go syntax; they are rewritten to `(?i)^...`
    in a temporary copy so the Python regex engine accepts them (the committed files stay as
    published)."""
    outputs: list[str] = []
    code = 0
    for n, doc in enumerate(docs):
        schema = crd_schema(doc["apiVersion"], doc["kind"])
        schema_file = folder / f"schema-{n}.json"
        schema_file.write_text(json.dumps(schema).replace('"^(?i)', '"(?i)^'))
        doc_file = folder / f"{doc['kind']}-{n}.json"
        doc_file.write_text(json.dumps(doc))
        proc = subprocess.run([str(CHECK_JSONSCHEMA), "--regex-variant", "python",
                               "--schemafile", str(schema_file), str(doc_file)],
                              capture_output=True, text=True, check=False)
        code = max(code, proc.returncode)
        if proc.returncode:
            outputs.append(f"{doc['kind']} {doc['metadata']['name']}:\n{proc.stdout}{proc.stderr}")
    return subprocess.CompletedProcess([], code, "\n".join(outputs), "")


def test_custom_resources_match_their_crd_schemas(all_docs: list[dict[str, Any]],
                                                  tmp_path: Path) -> None:
    custom = [d for d in all_docs if (d["apiVersion"], d["kind"]) in CRD_SCHEMA_FILES]
    assert {d["kind"] for d in custom} >= {"KafkaTopic", "KafkaUser", "ScaledObject",
                                           "ServiceMonitor", "PodMonitor"}
    result = _check_jsonschema(custom, tmp_path)
    assert result.returncode == 0, result.stdout


def test_crd_schemas_reject_a_wrong_custom_resource(all_docs: list[dict[str, Any]],
                                                    tmp_path: Path) -> None:
    topic = next(d for d in all_docs if d["kind"] == "KafkaTopic")
    broken = {**topic, "spec": {**topic["spec"], "partitions": "three"}}
    result = _check_jsonschema([broken], tmp_path)
    assert result.returncode == 1, result.stdout
    assert "partitions" in result.stdout


def test_every_container_has_probes_resources_and_the_restricted_context(
        docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        name = f"{doc['kind']} {doc['metadata']['name']}"
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and isinstance(pod_sc["runAsUser"], int), name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            assert any(m["mountPath"] == "/tmp" and m["name"] in tmp  # noqa: S108
                       for m in c["volumeMounts"]), f"{name}: /tmp is no emptyDir"
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], name
            assert res["limits"]["memory"], name
            if doc["kind"] != "Job":
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert probe in c, f"{name}: no {probe}"


def test_every_workload_has_a_pdb_of_max_unavailable_1(docs: list[dict[str, Any]]) -> None:
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for workload in workloads(docs):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs
                    if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, workload["metadata"]["name"]
        assert matching[0]["spec"]["maxUnavailable"] == 1


def test_images_are_pinned_never_latest(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        spec = pod_spec(doc)
        for c in containers(spec) if spec else []:
            image = c["image"]
            assert "@sha256:" in image or (":" in image.rsplit("/", 1)[-1]
                                           and not image.endswith(":latest")), image
    assert "/image/tag" in render_error("image.tag=latest")


def test_no_secret_is_created_and_secret_values_come_from_secret_refs(
        docs: list[dict[str, Any]]) -> None:
    assert "Secret" not in kinds(docs)
    for doc in docs:
        spec = pod_spec(doc)
        for c in containers(spec) if spec else []:
            for env in c.get("env", []):
                if any(word in env["name"] for word in SECRETISH):
                    assert "value" not in env, f"{env['name']} has a literal value"
                    assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_env_vars_are_settings_the_services_read(docs: list[dict[str, Any]]) -> None:
    known = known_env_names()
    for doc in docs:
        spec = pod_spec(doc)
        for c in containers(spec) if spec else []:
            unknown = {e["name"] for e in c.get("env", [])} - known
            assert not unknown, f"{doc['metadata']['name']}: {unknown}"


def _routes(service: str) -> set[str]:
    """The paths the service's real app serves (built, not started)."""
    from services.common.config.settings import KafkaSettings
    from services.common.tracking import TrackingSettings

    kafka = KafkaSettings()
    if service == "ingest":
        from services.ingest.bootstrap import bootstrap as bootstrap_ingest
        from services.ingest.entrypoints.http.app import create_app as ingest_app
        from services.ingest.settings import ApiKeyConfig, IngestSettings

        app = ingest_app(bootstrap_ingest(
            IngestSettings(api_keys=[ApiKeyConfig(name="k", sha256="0" * 64)]), kafka))
    elif service == "orchestrator":
        from services.orchestrator.bootstrap import bootstrap, build_decider
        from services.orchestrator.entrypoints.http.app import create_app as orchestrator_app
        from services.orchestrator.settings import OrchestratorSettings

        settings = OrchestratorSettings(DATABASE_URL="postgresql+asyncpg://x@h/db")  # type: ignore[call-arg]
        app = orchestrator_app(bootstrap(settings, kafka, build_decider(
            [str(ROOT / "config/programs")], str(ROOT / "config/contact-policy.yaml"), "b2b")))
    else:
        from services.dispatch.bootstrap import bootstrap
        from services.dispatch.entrypoints.http.app import create_app as dispatch_app
        from services.dispatch.settings import DispatchSettings

        app = dispatch_app(bootstrap(
            DispatchSettings(DATABASE_URL="postgresql+asyncpg://x@h/db"),  # type: ignore[call-arg]
            kafka, TrackingSettings()))
    # routers included with include_router are tree nodes since FastAPI 0.137: flattened here
    return {str(route.path) for route in iter_route_contexts(app.routes)}


def test_probes_hit_the_services_real_endpoints_and_ports(
        default_docs: list[dict[str, Any]]) -> None:
    for workload in workloads(default_docs):
        service = component(workload)
        (c,) = workload["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        env = {e["name"]: e.get("value") for e in c["env"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            action = c[probe].get("httpGet") or c[probe]["tcpSocket"]
            assert action["port"] in ports
            if service == "scoring":
                # the worker's health endpoints, next to /metrics
                # (services/scoring/entrypoints/probes.py)
                assert ports[action["port"]] == int(env["NURTURE_SCORING_METRICS_PORT"])
                assert action["path"] == (READY_PATH if probe == "readinessProbe"
                                          else LIVE_PATH), probe
                continue
            assert ports[action["port"]] == int(env[f"NURTURE_{service.upper()}_PORT"])
            assert action["path"] in _routes(service), f"{service} {probe}"
        assert c["readinessProbe"]["httpGet"]["path"] in ("/readyz", READY_PATH)


def test_commands_are_console_scripts_with_real_subcommands(
        all_docs: list[dict[str, Any]]) -> None:
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    seen = set()
    for doc in all_docs:
        spec = pod_spec(doc)
        for c in containers(spec) if spec else []:
            script, *args = c["args"]
            module = importlib.import_module(scripts[script].split(":")[0])
            parsed = module.parse_args(args)
            seen.add((script, parsed.command))
    assert seen == {("nurture-ingest", "serve"), ("nurture-scoring", "worker"),
                    ("nurture-orchestrator", "serve"), ("nurture-dispatch", "serve"),
                    ("nurture-orchestrator", "migrate"), ("nurture-dispatch", "migrate")}


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(
        default_docs: list[dict[str, Any]]) -> None:
    (job,) = [d for d in default_docs if d["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    # a hook runs before the release's other resources exist: nothing of the chart is read
    assert "serviceAccountName" not in spec
    for c in containers(spec):
        for env in c["env"]:
            assert "configMapKeyRef" not in env.get("valueFrom", {})


def test_grace_period_outlasts_the_services_drain(docs: list[dict[str, Any]]) -> None:
    for workload in workloads(docs):
        spec = workload["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        grace = [float(e["value"]) for e in c["env"]
                 if e["name"].endswith("_SHUTDOWN_GRACE_SECONDS")]
        pre_stop = int(c.get("lifecycle", {}).get("preStop", {}).get("exec", {})
                       .get("command", ["sleep", "0"])[1])
        assert spec["terminationGracePeriodSeconds"] > sum(grace) + pre_stop
    assert "terminationGracePeriodSeconds" in render_error("shutdownGraceSeconds=30")


def test_keda_and_hpa_never_scale_the_same_workload(all_docs: list[dict[str, Any]]) -> None:
    keda = {d["spec"]["scaleTargetRef"]["name"] for d in all_docs if d["kind"] == "ScaledObject"}
    hpa = {d["spec"]["scaleTargetRef"]["name"] for d in all_docs
           if d["kind"] == "HorizontalPodAutoscaler"}
    names = {d["metadata"]["name"]: d for d in workloads(all_docs)}
    assert keda and hpa and not keda & hpa
    assert keda <= names.keys() and hpa <= names.keys()
    for target in keda | hpa:
        assert "replicas" not in names[target]["spec"], f"{target}: replicas fight the scaler"
    # without KEDA the lag-scaled services fall back to an HPA
    no_keda = render(ALL_FEATURES, sets=("keda.enabled=false",))
    assert not [d for d in no_keda if d["kind"] == "ScaledObject"]
    assert len([d for d in no_keda if d["kind"] == "HorizontalPodAutoscaler"]) == 3


def test_kafka_topics_match_the_topic_map(all_docs: list[dict[str, Any]]) -> None:
    topics = {d["spec"]["topicName"]: d["spec"] for d in all_docs if d["kind"] == "KafkaTopic"}
    prefix = "prod."
    events_partitions = topics[prefix + "nurture.events.v1"]["partitions"]
    for spec in SPECS:
        topic = topics.pop(prefix + spec.name)
        assert topic["config"]["retention.ms"] == spec.retention_ms
        assert topic["config"]["cleanup.policy"] == "delete"
        assert topic["partitions"] == 12 and topic["replicas"] == 3
    changelog = topics.pop(f"{prefix}nurture-scoring-lead-state-changelog")
    assert changelog["config"]["cleanup.policy"] == "compact"
    # co-partitioned with the input topic, as faust requires
    assert changelog["partitions"] == events_partitions
    assert set(topics) == {f"{prefix}nurture-scoring-__assignor-__leader"}


def test_the_changelog_name_is_the_one_faust_uses() -> None:
    from services.common.config.settings import KafkaSettings
    from services.common.kafka.topics import Topics
    from services.common.observability.metrics import new_registry
    from services.scoring.adapters.faust_app import create_app
    from services.scoring.metrics import ScoringMetrics
    from services.scoring.service_layer.handlers import Processor
    from services.scoring.settings import ScoringSettings

    kafka = KafkaSettings(NURTURE_TOPIC_PREFIX="prod.")  # type: ignore[call-arg]
    app = create_app(ScoringSettings(), kafka, Processor([], Topics("prod.")),
                     ScoringMetrics(new_registry()), partitions=12)
    (table,) = app.tables.values()
    assert table.changelog_topic.get_topic_name() == "prod.nurture-scoring-lead-state-changelog"


def test_kafka_users_get_least_privilege_acls(all_docs: list[dict[str, Any]]) -> None:
    users = {component(d): d["spec"]["authorization"]["acls"]
             for d in all_docs if d["kind"] == "KafkaUser"}
    assert set(users) == set(SERVICES)

    def ops(service: str, name: str) -> set[str]:
        return {op for acl in users[service] if acl["resource"]["name"] == name
                for op in acl["operations"]}

    assert "Write" in ops("ingest", "prod.nurture.events.v1")
    assert "Read" not in ops("ingest", "prod.nurture.events.v1")
    # its outbox publishes `lead.erased` (erasure) and inbound SMS replies there; it never reads
    # it (test_helm_access.py checks every ACL against the code)
    assert ops("orchestrator", "prod.nurture.events.v1") == {"Write", "Describe"}
    assert "Read" in ops("scoring", "prod.nurture.events.v1")
    assert "Read" in ops("orchestrator", "prod.nurture-orchestrator")
    for service in SERVICES:
        assert all(acl["resource"]["type"] in ("topic", "group") for acl in users[service])


def test_config_maps_carry_the_repository_files(default_docs: list[dict[str, Any]]) -> None:
    maps = {d["metadata"]["name"]: d["data"] for d in default_docs if d["kind"] == "ConfigMap"}
    config = ROOT / "config"
    assert maps["nurture-scoring-models"] == {
        p.name: p.read_text() for p in sorted((config / "scoring").glob("*.yaml"))}
    assert maps["nurture-programs"] == {
        p.name: p.read_text() for p in sorted((config / "programs").glob("*.yaml"))}
    assert maps["nurture-contact-policy"] == {
        "contact-policy.yaml": (config / "contact-policy.yaml").read_text()}
    templates = {str(p.relative_to(config / "templates")): p.read_text()
                 for p in (config / "templates").rglob("*") if p.is_file()}
    assert {k.replace("__", "/"): v for k, v in maps["nurture-templates"].items()} == templates
    (dispatch,) = [d for d in workloads(default_docs) if component(d) == "dispatch"]
    (volume,) = [v for v in dispatch["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "templates"]
    assert {i["path"] for i in volume["configMap"]["items"]} == set(templates)


def test_a_program_change_rolls_the_orchestrator_only(tmp_path: Path) -> None:
    chart = tmp_path / "nurture"
    shutil.copytree(CHART, chart, symlinks=False)  # files/config becomes a real copy
    program = next((chart / "files/config/programs").glob("*.yaml"))
    before = {component(d): d for d in workloads(render(chart=chart))}
    program.write_text(program.read_text() + "\n# a marketer's edit\n")
    after = {component(d): d for d in workloads(render(chart=chart))}

    def checksum(docs: dict[str, dict[str, Any]], service: str) -> str:
        return str(docs[service]["spec"]["template"]["metadata"]["annotations"]
                   ["checksum/config"])

    assert checksum(before, "orchestrator") != checksum(after, "orchestrator")
    for service in ("scoring", "dispatch"):
        assert checksum(before, service) == checksum(after, service)


def test_network_policies_deny_by_default_and_allow_what_is_needed(
        default_docs: list[dict[str, Any]]) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in default_docs
                if d["kind"] == "NetworkPolicy"}
    deny = policies.pop("nurture-default-deny")
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    egress_ports = {name.removeprefix("nurture-"): {p["port"] for rule in spec["egress"]
                                                   for p in rule["ports"]}
                    for name, spec in policies.items()}
    for service in ("ingest", "scoring", "orchestrator", "dispatch"):
        assert {53, 9092} <= egress_ports[service]
    assert 5432 in egress_ports["orchestrator"] and 5432 in egress_ports["dispatch"]
    assert 5432 in egress_ports["migrations"]
    assert 5432 not in egress_ports["ingest"] and 5432 not in egress_ports["scoring"]
    assert 587 in egress_ports["dispatch"] and 587 not in egress_ports["ingest"]


def test_scoring_is_a_statefulset_with_a_volume_only_for_rocksdb(
        default_docs: list[dict[str, Any]], all_docs: list[dict[str, Any]]) -> None:
    (memory,) = [d for d in workloads(default_docs) if component(d) == "scoring"]
    assert memory["kind"] == "Deployment"
    assert any(v["name"] == "state" and "emptyDir" in v
               for v in memory["spec"]["template"]["spec"]["volumes"])
    (rocks,) = [d for d in workloads(all_docs) if component(d) == "scoring"]
    assert rocks["kind"] == "StatefulSet"
    assert [t["metadata"]["name"] for t in rocks["spec"]["volumeClaimTemplates"]] == ["state"]


def test_ingress_exposes_only_public_endpoints(all_docs: list[dict[str, Any]]) -> None:
    (ingress,) = [d for d in all_docs if d["kind"] == "Ingress"]
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert {"/t/", "/v1/events", "/v1/webhooks/email"} <= paths
    assert not paths & {"/metrics", "/docs", "/", "/healthz", "/readyz"}


def test_values_schema_rejects_unknown_keys_and_bad_values() -> None:
    assert "additional properties" in render_error("ingest.replicaz=3")
    assert render_error("scoring.store=redis")
    assert render_error("kafka.securityProtocol=TLS")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert "$ref" not in json.dumps(schema), "the schema must be self-contained"
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


def test_packaged_chart_contains_the_config_files(tmp_path: Path) -> None:
    proc = run_helm("package", str(CHART), "--destination", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (archive,) = tmp_path.glob("nurture-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "nurture/files/config/contact-policy.yaml" in names
    assert "nurture/values.schema.json" in names
    assert "nurture/files/observability/prometheus/alerts.yml" in names
    assert "nurture/files/observability/prometheus/prometheus.yml" not in names
    assert not any(n.startswith("nurture/ci/") for n in names)


def test_alert_rules_and_dashboards_come_from_deploy_observability(
        all_docs: list[dict[str, Any]]) -> None:
    observability = ROOT / "deploy" / "observability"
    (rule,) = [d for d in all_docs if d["kind"] == "PrometheusRule"]
    # the rules file as it is: Prometheus templates such as {{ $labels.job }} are not Helm's
    assert rule["spec"] == {"groups": yaml.safe_load(
        (observability / "prometheus" / "alerts.yml").read_text())["groups"]}
    dashboards = {key: json.loads(value) for d in all_docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["labels"].get("grafana_dashboard") == "1"
                  for key, value in d["data"].items()}
    assert dashboards == {p.name: json.loads(p.read_text())
                          for p in (observability / "grafana").glob("*.json")}
    monitors = [d for d in all_docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    jobs = {ep["relabelings"][0]["replacement"] for d in monitors
            for ep in d["spec"].get("endpoints", d["spec"].get("podMetricsEndpoints", []))}
    assert jobs == set(SERVICES)
