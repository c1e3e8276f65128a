"""The tenant's NetworkPolicies (builders/network.py), flow by flow."""

from __future__ import annotations

from typing import Any

import pytest

from stackforge_operator.builders import network
from stackforge_operator.builders.common import Manifest
from tests.unit.builders.tenants import tenant

ISSUED_TLS: dict[str, Any] = {"tls": {"issuerRef": {"name": "letsencrypt"}}}
PAYMENTS_EGRESS: dict[str, Any] = {"components": {"apps": [{
    "name": "api", "image": "registry.example.com/acme/api:1.4.2", "port": 8080,
    "egress": [{"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"],
                "ports": [{"port": 443}, {"port": 53, "protocol": "UDP"}]}],
}]}}


def _policies(changes: dict[str, Any] | None = None) -> dict[str, Manifest]:
    return {p["metadata"]["name"]: p for p in network.build(tenant(changes))}


def _labels(peer: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = peer["podSelector"]["matchLabels"]
    return labels


def test_consul_reaches_each_app_on_its_port_for_health_checks() -> None:
    policies = _policies()
    consul_egress = policies["allow-consul"]["spec"]["egress"]
    app_ingress = policies["allow-app-api"]["spec"]["ingress"]
    to_api = [r for r in consul_egress if _labels(r["to"][0]).get("stackforge.io/app") == "api"]
    assert [r["ports"] for r in to_api] == [[{"protocol": "TCP", "port": 8080}]]
    from_consul = [r for r in app_ingress
                   if _labels(r["from"][0]).get("app.kubernetes.io/component") == "consul"]
    assert [r["ports"] for r in from_consul] == [[{"protocol": "TCP", "port": 8080}]]


def test_no_consul_no_check_flow() -> None:
    policies = _policies({"components": {"consul": {"enabled": False}}})
    sources = [r["from"][0] for r in policies["allow-app-api"]["spec"]["ingress"]]
    assert all(_labels(s).get("app.kubernetes.io/component") == "kong" for s in sources)


def test_acme_solver_admitted_only_when_cert_manager_issues_the_certificate() -> None:
    solver = _policies(ISSUED_TLS)["allow-acme-solver"]["spec"]
    assert solver["podSelector"] == {
        "matchLabels": {"acme.cert-manager.io/http01-solver": "true"}}
    # From anywhere (the ingress controller runs wherever the cluster has it), one port.
    assert solver["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8089}]}]
    assert solver["policyTypes"] == ["Ingress"]
    assert "allow-acme-solver" not in _policies()  # a domain with no tls
    assert "allow-acme-solver" not in _policies({"tls": {"secretName": "acme-tls"}})


def test_app_egress_is_exactly_the_spec_rule() -> None:
    egress = _policies(PAYMENTS_EGRESS)["allow-app-api"]["spec"]["egress"]
    outside = [r for r in egress if "ipBlock" in r["to"][0]]
    assert outside == [{
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}],
        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "UDP", "port": 53}],
    }]


def test_apps_without_egress_reach_no_address_outside_the_namespace() -> None:
    for policy in _policies().values():
        for rule in policy["spec"].get("egress", []):
            assert all("ipBlock" not in peer for peer in rule.get("to", [])), policy


def test_isolation_leaves_default_deny_and_the_operator_only() -> None:
    isolated = _policies({**PAYMENTS_EGRESS, **ISSUED_TLS, "isolate": True})
    assert set(isolated) == {"default-deny", "allow-operator"}
    operator = isolated["allow-operator"]["spec"]
    peer = {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "stackforge-system"}}}
    # One way: the answers go back on the connection; no tenant pod, isolated or
    # not, opens one to the operator's namespace (its metrics name every tenant).
    assert operator == {"podSelector": {}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [peer]}]}


def test_the_operator_is_admitted_from_the_namespace_its_pod_runs_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chart installs into any namespace; the policies named stackforge-system
    only, so an operator installed elsewhere could not reach any tenant pod."""
    monkeypatch.setenv("POD_NAMESPACE", "platform-ops")
    operator = _policies()["allow-operator"]["spec"]
    assert operator["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "platform-ops"}}}]}]


def test_every_flow_has_a_reason_and_both_halves_render() -> None:
    t = tenant({**PAYMENTS_EGRESS, **ISSUED_TLS})
    policies = {p["metadata"]["name"]: p["spec"] for p in network.build(t)}
    for flow in network.flows(t):
        assert flow.why
        if flow.destination.pod_labels is not None:
            assert network.ingress_rule(flow) in policies[
                f"allow-{flow.destination.name}"]["ingress"]
        if flow.source.pod_labels is not None:
            assert network.egress_rule(flow) in policies[f"allow-{flow.source.name}"]["egress"]


def test_public_means_outside_every_private_shared_and_link_local_range() -> None:
    assert network.is_public("52.216.1.1")
    assert network.is_public("2600:1f18::1")
    for address in ("10.244.0.7", "100.64.1.1", "169.254.169.254", "172.20.0.1",
                    "192.168.1.1", "fd00::1", "fe80::1"):
        assert not network.is_public(address), address
