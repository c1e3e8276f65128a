"""The backup runner's egress NetworkPolicy (builders/backup_network.py)."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator.builders import backup, backup_network
from stackforge_operator.builders.common import COMPONENT_LABEL, TENANT_LABEL
from stackforge_operator.builders.network import build as tenant_policies
from stackforge_operator.models.backup import BackupPolicySpec
from tests.unit.builders.tenants import tenant

POSTGRES_RULE: dict[str, Any] = {
    "to": [{"podSelector": {"matchLabels": {COMPONENT_LABEL: "postgres", TENANT_LABEL: "acme"}}}],
    "ports": [{"protocol": "TCP", "port": 5432}],
}
PUBLIC: list[dict[str, Any]] = [
    {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "100.64.0.0/10",
                                                  "169.254.0.0/16", "172.16.0.0/12",
                                                  "192.168.0.0/16"]}},
    {"ipBlock": {"cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]}},
]
NOT_THE_TENANTS_NAMESPACE: dict[str, Any] = {"namespaceSelector": {"matchExpressions": [{
    "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["tenant-acme"]}]}}
# A host name: public addresses and pods of other namespaces, never 0.0.0.0/0
# (which kube-router matches against the tenant's own pods too).
HOST_NAME: list[dict[str, Any]] = [*PUBLIC, NOT_THE_TENANTS_NAMESPACE]


def _on_port(peers: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    return [{"to": [peer], "ports": [{"protocol": "TCP", "port": port}]} for peer in peers]
GRAFANA = {"url": "http://grafana.monitoring.svc:3000",
           "apiTokenSecretRef": {"name": "acme-grafana", "key": "token"}}


def _spec(endpoint: str | None = None, **changes: Any) -> BackupPolicySpec:
    storage: dict[str, Any] = {"bucket": "backups"}
    if endpoint is not None:
        storage["endpoint"] = endpoint
    return BackupPolicySpec.model_validate({
        "tenantRef": {"name": "acme"}, "storage": storage, "retention": {"keepLast": 3},
        **changes})


def _egress(spec: BackupPolicySpec, **tenant_changes: Any) -> list[dict[str, Any]]:
    policy = backup_network.runner_egress("nightly", "tenant-acme", spec, tenant(tenant_changes))
    rules: list[dict[str, Any]] = policy["spec"]["egress"]
    return rules


def test_shape_name_and_selector() -> None:
    spec = _spec("https://10.1.2.3:9000")
    policy = backup_network.runner_egress("nightly", "tenant-acme", spec, tenant())
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["kind"] == "NetworkPolicy"
    assert policy["metadata"]["name"] == "nightly-runner-egress"
    assert policy["metadata"]["namespace"] == "tenant-acme"
    assert policy["metadata"]["labels"][backup.POLICY_LABEL] == "nightly"
    assert policy["spec"]["podSelector"] == {"matchLabels": {
        "stackforge.io/runner": "backup", backup.POLICY_LABEL: "nightly"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]


def test_selects_exactly_this_policys_runner_pods() -> None:
    spec = _spec("https://10.1.2.3:9000")
    t = tenant()
    selector = backup_network.runner_peer("nightly").selector()["matchLabels"]
    pod_labels = backup.job_template("nightly", spec, t)["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    other = backup.job_template("weekly", spec, t)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= other.items()


def test_ip_endpoint_gets_a_single_address_block() -> None:
    assert _egress(_spec("https://10.1.2.3:9000/")) == [
        POSTGRES_RULE,
        {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
         "ports": [{"protocol": "TCP", "port": 9000}]},
    ]


def test_hostname_endpoint_gets_public_addresses_and_other_namespaces_on_its_port() -> None:
    assert _egress(_spec("https://minio.storage.svc:9443"))[1:] == _on_port(HOST_NAME, 9443)


def test_private_addresses_the_host_name_resolved_to_are_named_public_ones_not() -> None:
    policy = backup_network.runner_egress(
        "nightly", "tenant-acme", _spec("https://s3.corp.example:9000"), tenant(),
        [("10.5.5.5", 9000), ("203.0.113.7", 9000), ("10.5.5.5", 9000)])
    assert policy["spec"]["egress"][1:] == _on_port(
        [{"ipBlock": {"cidr": "10.5.5.5/32"}}, *HOST_NAME], 9000)


def test_a_services_private_endpoints_are_named_with_the_port_they_serve_on() -> None:
    # The Service's cluster IP on its own port, its endpoint on the target port:
    # the policies are matched after the translation.
    policy = backup_network.runner_egress(
        "nightly", "tenant-acme", _spec("https://s3.storage.svc"), tenant(),
        [("10.96.0.20", 443), ("192.168.1.5", 9443), ("203.0.113.7", 8443)])
    assert policy["spec"]["egress"][1:] == [
        *_on_port([{"ipBlock": {"cidr": "10.96.0.20/32"}}, *HOST_NAME], 443),
        *_on_port([{"ipBlock": {"cidr": "192.168.1.5/32"}}], 9443)]


@pytest.mark.parametrize(("endpoint", "port"), [
    ("https://s3.eu-central-1.amazonaws.com", 443),
    ("http://minio.storage.svc", 80),
    ("https://10.1.2.3", 443),
])
def test_endpoint_without_port_takes_the_schemes(endpoint: str, port: int) -> None:
    assert _egress(_spec(endpoint))[1]["ports"] == [{"protocol": "TCP", "port": port}]


def test_no_endpoint_means_aws_over_https() -> None:
    assert _egress(_spec()) == [
        POSTGRES_RULE, *_on_port([{"ipBlock": {"cidr": "0.0.0.0/0"}}], 443)]


def test_grafana_only_when_its_target_is_on() -> None:
    on = _spec("https://10.1.2.3:9000", targets=["Postgres", "GrafanaDashboards"],
               grafana=GRAFANA)
    assert _egress(on)[2:] == _on_port(HOST_NAME, 3000)
    # Configured but not a target: no way out to it.
    off = _spec("https://10.1.2.3:9000", targets=["Postgres"], grafana=GRAFANA)
    assert len(_egress(off)) == 2
    ip = _spec("https://10.1.2.3:9000", targets=["GrafanaDashboards"],
               grafana={**GRAFANA, "url": "http://10.9.8.7"})
    assert _egress(ip)[1] == {"to": [{"ipBlock": {"cidr": "10.9.8.7/32"}}],
                              "ports": [{"protocol": "TCP", "port": 80}]}


def test_postgres_only_when_its_target_is_on() -> None:
    rules = _egress(_spec("https://10.1.2.3:9000", targets=["Configuration"]))
    assert POSTGRES_RULE not in rules
    assert len(rules) == 1


def test_postgres_rule_matches_the_tenant_policy_admitting_runners() -> None:
    # The two halves of the flow must name the same pods and port.
    t = tenant()
    ingress = next(p for p in tenant_policies(t) if p["metadata"]["name"] == "allow-postgres")
    admitted = [r for r in ingress["spec"]["ingress"]
                if {"podSelector": {"matchLabels": {"stackforge.io/runner": "backup"}}}
                in r.get("from", [])]
    assert admitted and admitted[0]["ports"] == POSTGRES_RULE["ports"]
    assert ingress["spec"]["podSelector"] == POSTGRES_RULE["to"][0]["podSelector"]


def test_isolated_tenant_runners_get_no_egress() -> None:
    policy = backup_network.runner_egress(
        "nightly", "tenant-acme", _spec("https://10.1.2.3:9000"), tenant({"isolate": True}))
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["egress"] == []


@pytest.mark.parametrize(("changes", "field"), [
    ({"storage": {"bucket": "backups", "endpoint": "https://10.1.2.3:99999"}},
     "spec.storage.endpoint"),
    ({"storage": {"bucket": "backups", "endpoint": "https://minio:0"}}, "spec.storage.endpoint"),
    ({"targets": ["GrafanaDashboards"], "grafana": {**GRAFANA, "url": "http://grafana:70000"}},
     "spec.grafana.url"),
])
def test_a_port_no_policy_can_hold_is_refused_by_field(changes: dict[str, Any],
                                                       field: str) -> None:
    spec = BackupPolicySpec.model_validate({
        "tenantRef": {"name": "acme"}, "storage": {"bucket": "backups"},
        "retention": {"keepLast": 3}, **changes})
    with pytest.raises(ValueError, match=f"^{field}: .*1-65535"):
        backup_network.runner_egress("nightly", "tenant-acme", spec, tenant())


def test_a_restoring_primary_reaches_the_archives_endpoint_only() -> None:
    storage = _spec("https://s3.other.svc:9000").storage
    policy = backup_network.restore_egress(tenant(), storage, [("10.96.0.20", 9000),
                                                               ("10.244.0.7", 9443)])
    assert policy["metadata"]["name"] == backup_network.RESTORE_EGRESS
    assert policy["metadata"]["namespace"] == "tenant-acme"
    assert policy["spec"]["podSelector"] == {"matchLabels": {
        COMPONENT_LABEL: "postgres", TENANT_LABEL: "acme"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["egress"] == [
        *_on_port([{"ipBlock": {"cidr": "10.96.0.20/32"}}, *HOST_NAME], 9000),
        *_on_port([{"ipBlock": {"cidr": "10.244.0.7/32"}}], 9443)]
    aws = backup_network.restore_egress(tenant(), _spec().storage)
    assert aws["spec"]["egress"] == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                      "ports": [{"protocol": "TCP", "port": 443}]}]
    isolated = backup_network.restore_egress(tenant({"isolate": True}), storage)
    assert isolated["spec"]["egress"] == []


def test_a_dump_restoring_runner_reaches_the_new_primary_and_the_dumps_endpoint_only() -> None:
    storage = _spec("https://s3.other.svc:9000").storage
    policy = backup_network.dump_restore_egress(tenant(), storage, [("10.96.0.20", 9000)])
    assert policy["metadata"]["name"] == backup_network.DUMP_EGRESS
    assert policy["spec"]["podSelector"] == {"matchLabels": {
        COMPONENT_LABEL: "bootstrap", TENANT_LABEL: "acme", "stackforge.io/runner": "backup"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    to_postgres = {"to": [{"podSelector": {"matchLabels": {
        COMPONENT_LABEL: "postgres", TENANT_LABEL: "acme"}}}],
        "ports": [{"protocol": "TCP", "port": 5432}]}
    assert policy["spec"]["egress"] == [
        to_postgres, *_on_port([{"ipBlock": {"cidr": "10.96.0.20/32"}}, *HOST_NAME], 9000)]
    aws = backup_network.dump_restore_egress(tenant(), _spec().storage)
    assert aws["spec"]["egress"] == [to_postgres, {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}]
    isolated = backup_network.dump_restore_egress(tenant({"isolate": True}), storage)
    assert isolated["spec"]["egress"] == []
