from __future__ import annotations

import ipaddress
from typing import Any

from stackforge_operator.builders import drill


def _policy(endpoint: str | None, addresses: list[tuple[str, int]]) -> dict[str, Any]:
    spec: dict[str, Any] = drill.network_policy(
        "drill-monthly-1", "monthly", "shop", "tenant-shop", endpoint, addresses)["spec"]
    return spec


def test_no_ip_block_of_the_sandbox_covers_a_private_address_but_its_storages() -> None:
    # Dataplanes that match ipBlocks against pod addresses would otherwise let the
    # sandbox reach the tenant's pods (shown on the real node: test_drill_runs.py).
    spec = _policy("https://s3.storage.svc:9443", [("10.244.0.1", 9443)])
    tenant_pod = ipaddress.ip_address("10.244.0.37")
    open_to_tenant_pod = []
    for rule in spec["egress"]:
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None:
                continue
            network = ipaddress.ip_network(block["cidr"])
            excluded = [ipaddress.ip_network(e) for e in block.get("except", [])]
            if tenant_pod.version == network.version and tenant_pod in network and not any(
                    tenant_pod in e for e in excluded):
                open_to_tenant_pod.append(block)
    assert open_to_tenant_pod == []
    storage_rules = [r for r in spec["egress"]
                     if r.get("to", [{}])[0].get("ipBlock", {}).get("cidr") == "10.244.0.1/32"]
    assert storage_rules == [{"to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}],
                              "ports": [{"protocol": "TCP", "port": 9443}]}]


def test_the_sandbox_reaches_public_addresses_and_other_namespaces_but_not_the_tenant() -> None:
    spec = _policy("https://s3.example.com", [])
    blocks = [p["ipBlock"] for r in spec["egress"] for p in r.get("to", []) if "ipBlock" in p]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    assert all(b["except"] for b in blocks)
    [selector] = [p["namespaceSelector"] for r in spec["egress"] for p in r.get("to", [])
                  if "matchExpressions" in p.get("namespaceSelector", {})]
    assert selector["matchExpressions"][0]["values"] == ["tenant-shop", "drill-monthly-1"]
    assert spec["ingress"] == [{"from": [{"podSelector": {}}]}]


def test_out_of_the_sandbox_only_the_buckets_port_and_the_clusters_dns() -> None:
    """A restored copy of customer data reached every other namespace and the
    public internet on every port, and any address on port 53."""
    for endpoint, port in (("https://s3.example.com:9000", 9000), (None, 443)):
        spec = _policy(endpoint, [])
        outward = [r for r in spec["egress"] if r.get("to") != [{"podSelector": {}}]]
        assert outward, spec
        dns = [r for r in outward if {p["port"] for p in r["ports"]} == {53}]
        assert len(dns) == 1 and all("ipBlock" not in p for p in dns[0]["to"]), dns
        for rule in outward:
            if rule in dns:
                continue
            assert rule["ports"] == [{"protocol": "TCP", "port": port}], rule


def test_a_sandbox_restoring_from_aws_s3_reaches_public_addresses_only() -> None:
    """The runners' AWS rule (0.0.0.0/0) would take in the tenant's pods on a
    dataplane that matches ipBlocks against pod addresses."""
    spec = _policy(None, [])
    blocks = [p["ipBlock"] for r in spec["egress"] for p in r.get("to", []) if "ipBlock" in p]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    assert all("10.0.0.0/8" in b["except"] or "fc00::/7" in b["except"] for b in blocks)
