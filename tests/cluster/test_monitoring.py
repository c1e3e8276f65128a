"""Per-tenant monitoring on the real control plane, with the Prometheus Operator's real CRDs:
a PrometheusRule with the runbook's thresholds and a ServiceMonitor per component."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator.builders.monitoring import RULE_NAME
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import prometheus_operator, tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, spec_of
from tests.support.tenants import eventually

NAME = "watched"
NS = f"tenant-{NAME}"
GROUP, VERSION = "monitoring.coreos.com", "v1"


@pytest.fixture(scope="module")
def prometheus_crds(cluster: ClusterHandle) -> Iterator[None]:
    for path in prometheus_operator.crd_paths():
        cluster.kubectl("apply", "--server-side", "-f", str(path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{n}" for n in prometheus_operator.CRD_NAMES))
    yield
    cluster.kubectl("delete", "crd", *prometheus_operator.CRD_NAMES, "--wait=false")


@pytest.fixture(scope="module")
def watched(cluster: ClusterHandle, prometheus_crds: None,
            operator: OperatorProcess) -> Iterator[str]:
    tenants.apply(cluster, tenants.small_tenant(NAME, components={
        "postgres": {"database": "shop"},
        "kafka": {"enabled": True},
        "apps": [{"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080}],
    }))
    tenants.wait_condition(cluster, NAME, "Ready", "True")
    yield NAME
    tenants.discard(cluster, NAME)  # in the background; the name is not reused


def _objects(cluster: ClusterHandle, plural: str) -> dict[str, dict[str, Any]]:
    found = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        GROUP, VERSION, NS, plural)
    assert isinstance(found, dict)  # the client types a custom object list as a bare object
    return {o["metadata"]["name"]: o for o in found["items"]}


def _rule(cluster: ClusterHandle) -> dict[str, Any] | None:
    try:
        found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            GROUP, VERSION, NS, "prometheusrules", RULE_NAME)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    return found


def _alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


def test_prometheus_rule_carries_the_runbooks_thresholds(
    cluster: ClusterHandle, watched: str
) -> None:
    # The operator notices the CRDs within its discovery cache period.
    rule = eventually(lambda: _rule(cluster), timeout=90)
    alerts = _alerts(rule)
    assert {"StackForgeHighCPU", "StackForgeHighMemory", "StackForgeDiskFilling",
            "StackForgeHighErrorRate", "StackForgeSlowResponses", "StackForgeServiceDown",
            "StackForgeKafkaLagIncreasing", "StackForgeDatabaseConnectionsHigh",
            "StackForgeLoginFailureSpike"} == set(alerts)
    assert alerts["StackForgeHighCPU"]["for"] == "5m"
    assert alerts["StackForgeHighCPU"]["expr"].endswith("> 0.8")
    assert alerts["StackForgeServiceDown"]["for"] == "2m"
    connections = alerts["StackForgeDatabaseConnectionsHigh"]["expr"]
    assert "pg_stat_activity_count" in connections and connections.endswith("> 0.8")
    assert all(f'namespace="{NS}"' in a["expr"] for a in alerts.values())
    owner = rule["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("StackForgeTenant", NAME)


def test_a_service_monitor_per_component_resolves_to_its_pods(
    cluster: ClusterHandle, watched: str
) -> None:
    wanted = {"postgres", "redis", "kafka", "kong"}
    monitors = eventually(
        lambda: (lambda m: m if set(m) == wanted else None)(
            _objects(cluster, "servicemonitors")), timeout=90)
    core = client.CoreV1Api(cluster.api)
    discovery = client.DiscoveryV1Api(cluster.api)
    for component, monitor in monitors.items():
        selector = ",".join(f"{k}={v}"
                            for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        services = core.list_namespaced_service(NS, label_selector=selector).items
        assert [name_of(s) for s in services] == [f"{component}-metrics"]
        port = monitor["spec"]["endpoints"][0]["port"]
        assert [p.name for p in spec_of(services[0]).ports or []] == [port]

        # The endpoints controller found ready pods behind the metrics Service.
        def ready_endpoints(service: str = name_of(services[0])) -> list[str] | None:
            slices = discovery.list_namespaced_endpoint_slice(
                NS, label_selector=f"kubernetes.io/service-name={service}").items
            addresses = [a for s in slices for e in (s.endpoints or [])
                         if e.conditions and e.conditions.ready for a in e.addresses]
            return addresses or None

        eventually(ready_endpoints, timeout=60)


def test_monitoring_follows_the_components(cluster: ClusterHandle, watched: str) -> None:
    eventually(lambda: "kafka" in _objects(cluster, "servicemonitors") or None, timeout=90)
    tenants.apply(cluster, tenants.small_tenant(NAME, components={
        "postgres": {"database": "shop"},
        "kafka": {"enabled": False},
        "apps": [{"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080}],
    }))

    def kafka_gone() -> bool | None:
        rule = _rule(cluster)
        monitors = _objects(cluster, "servicemonitors")
        if rule is None or "kafka" in monitors:
            return None
        return "StackForgeKafkaLagIncreasing" not in _alerts(rule) or None

    eventually(kafka_gone, timeout=90)
    assert set(_objects(cluster, "servicemonitors")) == {"postgres", "redis", "kong"}
