"""Who may talk to whom, as the chart renders it: the KafkaUsers' ACLs against what the services'
code produces and consumes (tests/deploy/kafka_access.py), the NetworkPolicies' sources and
destinations, and the Kafka security settings the chart refuses to render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.kafka.topics import SPECS
from services.dispatch.settings import DispatchSettings
from services.orchestrator.settings import OrchestratorSettings
from services.scoring.adapters.faust_app import handled_group
from tests.deploy.chart_support import (
    ALL_FEATURES,
    CHART,
    SERVICES,
    component,
    render,
    render_error,
)
from tests.deploy.kafka_access import allows, consumer_groups, topic_uses

PREFIX = "prod."  # ci/all-features-values.yaml's kafka.topicPrefix
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="module")
def users() -> dict[str, list[dict[str, Any]]]:
    return {component(d): d["spec"]["authorization"]["acls"]
            for d in render(ALL_FEATURES) if d["kind"] == "KafkaUser"}


def _scoring_app() -> Any:
    """The real faust app of the scoring worker, built (not started) with the CI prefix."""
    from services.common.config.settings import KafkaSettings
    from services.common.kafka.topics import Topics
    from services.common.observability.metrics import new_registry
    from services.scoring.adapters.faust_app import create_app
    from services.scoring.metrics import ScoringMetrics
    from services.scoring.service_layer.handlers import Processor
    from services.scoring.settings import ScoringSettings

    kafka = KafkaSettings(NURTURE_TOPIC_PREFIX=PREFIX)  # type: ignore[call-arg]
    return create_app(ScoringSettings(), kafka, Processor([], Topics(PREFIX)),
                      ScoringMetrics(new_registry()), partitions=12)


def _groups(service: str) -> set[str]:
    if service == "scoring":
        group = str(_scoring_app().conf.id)  # faust's consumer group is its app id
        # and the gap guard's (services/scoring/adapters/faust_app.py)
        return {group, handled_group(group)}
    settings = {"orchestrator": OrchestratorSettings, "dispatch": DispatchSettings}
    if service not in settings:
        return set()
    base = PREFIX + str(settings[service].model_fields["group_id"].default)
    return consumer_groups(service, base)


def test_the_code_scan_sees_each_services_kafka_traffic() -> None:
    """The scan behind the ACL test finds the flows docs/architecture.md describes (so an empty
    or broken scan cannot pass the ACL test by expecting nothing)."""
    assert topic_uses("ingest")["nurture.events.v1"] == {"Write"}
    # and the identity hand-overs and forwarded events of linked ids (docs/identity.md)
    assert topic_uses("scoring")["nurture.events.v1"] == {"Read", "Describe", "Write"}
    assert topic_uses("scoring")["nurture.scored-events.v1"] == {"Write"}
    assert topic_uses("orchestrator")["nurture.scored-events.v1"] == {"Read"}
    # the erasure's `lead.erased` and inbound SMS replies, through the outbox
    assert topic_uses("orchestrator")["nurture.events.v1"] == {"Write"}
    assert topic_uses("dispatch")["nurture.events.v1"] == {"Read", "Write"}
    assert _groups("dispatch") == {"prod.nurture-dispatch", "prod.nurture-dispatch-suppressions"}
    assert _groups("orchestrator") == {"prod.nurture-orchestrator"}
    # faust's agent reads exactly what the scan calls scoring's reads
    app = _scoring_app()
    sources = {t for agent in app.agents.values() for t in agent.channel.topics}
    assert sources == {PREFIX + t for t, ops in topic_uses("scoring").items() if "Read" in ops}


@pytest.mark.parametrize("service", SERVICES)
def test_kafka_user_acls_are_exactly_what_the_code_does(
        users: dict[str, list[dict[str, Any]]], service: str) -> None:
    acls, uses = users[service], topic_uses(service)
    for spec in SPECS:
        needed = uses.get(spec.name, frozenset())
        for op in ("Read", "Write"):
            assert allows(acls, "topic", PREFIX + spec.name, op) == (op in needed), \
                f"{service} {op} {spec.name}: the code needs {sorted(needed) or 'nothing'}"
        if needed:
            assert allows(acls, "topic", PREFIX + spec.name, "Describe"), spec.name
    groups = _groups(service)
    for group in groups:
        assert allows(acls, "group", group, "Read"), f"{service} group {group}"
    others = set().union(*(_groups(s) for s in SERVICES if s != service)) - groups
    for group in others:
        assert not allows(acls, "group", group, "Read"), f"{service} may join {group}"
    assert all(acl["resource"]["type"] in ("topic", "group") for acl in acls), service


def test_scoring_may_use_faust_s_own_topics_and_no_one_else_may(
        users: dict[str, list[dict[str, Any]]]) -> None:
    app = _scoring_app()
    (table,) = app.tables.values()
    internal = [table.changelog_topic.get_topic_name(), app._leader_assignor._leader_topic_name]
    for topic in internal:
        for op in ("Read", "Write", "Create"):
            assert allows(users["scoring"], "topic", topic, op), f"{op} {topic}"
        for service in ("ingest", "orchestrator", "dispatch"):
            assert not allows(users[service], "topic", topic, "Describe"), service


def _policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"].removeprefix("nurture-"): d["spec"] for d in docs
            if d["kind"] == "NetworkPolicy"}


def _sources(policy: dict[str, Any], port: str) -> list[dict[str, Any] | None]:
    """The peers admitted on `port`; None: a rule without `from` (every source)."""
    peers: list[dict[str, Any] | None] = []
    for rule in policy.get("ingress") or []:
        if any(p["port"] == port for p in rule["ports"]):
            peers += rule.get("from", [None])
    return peers


def test_no_api_port_is_open_to_every_namespace_by_default() -> None:
    policies = _policies(render())
    monitoring = DEFAULTS["networkPolicy"]["metricsFrom"]
    assert monitoring == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}]
    for name, policy in policies.items():
        for rule in policy.get("ingress") or []:
            assert {"namespaceSelector": {}} not in rule.get("from", []), name
    assert _sources(policies["orchestrator"], "http") == [{"podSelector": {}}, *monitoring]
    assert _sources(policies["dispatch"], "http") == monitoring
    assert _sources(policies["scoring"], "metrics") == monitoring
    # ingest is the public intake: ingestFrom empty admits anyone, by design
    assert _sources(policies["ingest"], "http") == [None, *monitoring]


def test_orchestrator_sources_are_not_widened_by_the_metrics_rule(tmp_path: Path) -> None:
    api = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "crm"}}}]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"networkPolicy": {"orchestratorFrom": api}}))
    sources = _sources(_policies(render(values))["orchestrator"], "http")
    assert sources == [*api, *DEFAULTS["networkPolicy"]["metricsFrom"]]
    # no metricsFrom: no metrics rule, never one without `from`
    values.write_text(yaml.safe_dump({"networkPolicy": {"orchestratorFrom": api,
                                                        "metricsFrom": []}}))
    policies = _policies(render(values))
    assert _sources(policies["orchestrator"], "http") == api
    assert not policies["dispatch"]["ingress"] and not policies["scoring"]["ingress"]


def test_dispatch_may_reach_the_configured_smtp_port() -> None:
    def ports(*sets: str) -> list[int]:
        """The ports of dispatch's provider rule (the one that reaches HTTPS)."""
        spec = _policies(render(sets=sets))["dispatch"]
        (rule,) = [r for r in spec["egress"] if {"port": 443, "protocol": "TCP"} in r["ports"]]
        return [p["port"] for p in rule["ports"]]

    assert 2525 in ports("dispatch.smtp.port=2525")
    assert 2525 not in ports()
    default = ports()
    assert sorted(default) == sorted(set(DEFAULTS["dispatch"]["egressPorts"]))


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_strimzi_users_need_a_sasl_protocol(protocol: str) -> None:
    error = render_error("strimzi.users.enabled=true", f"kafka.securityProtocol={protocol}")
    assert "set kafka.securityProtocol to SASL_SSL (or SASL_PLAINTEXT)" in error, error
    assert f"not {protocol}" in error
    assert "SASL" in render_error("kafka.saslMechanism=PLAIN", "kafka.sasl.username=u",
                                  "kafka.sasl.passwordSecret.name=s")
    assert "needs credentials" in render_error("kafka.securityProtocol=SASL_SSL")


def _triggers(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [t["metadata"] for d in docs if d["kind"] == "ScaledObject"
            for t in d["spec"]["triggers"]]


def test_keda_reads_lag_with_the_services_sasl_and_tls() -> None:
    lag = ("keda.enabled=true", "scoring.autoscaling.enabled=true",
           "dispatch.autoscaling.enabled=true")
    plain = render(sets=(*lag, "strimzi.users.enabled=true",
                         "kafka.securityProtocol=SASL_PLAINTEXT"))
    assert [(t["sasl"], t["tls"]) for t in _triggers(plain)] == [("scram_sha512", "disable")] * 2
    docs = render(ALL_FEATURES)  # users over SASL_SSL with the cluster CA
    assert [(t["sasl"], t["tls"]) for t in _triggers(docs)] == [("scram_sha512", "enable")] * 2
    auths = [d["spec"] for d in docs if d["kind"] == "TriggerAuthentication"]
    assert len(auths) == 2
    for auth in auths:
        assert {r["parameter"] for r in auth["secretTargetRef"]} == {"password", "ca"}
    shared = render(sets=(*lag, "kafka.securityProtocol=SASL_SSL", "kafka.saslMechanism=PLAIN",
                          "kafka.sasl.username=u", "kafka.sasl.passwordSecret.name=s"))
    assert [(t["sasl"], t["tls"]) for t in _triggers(shared)] == [("plaintext", "enable")] * 2
