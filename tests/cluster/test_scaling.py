"""Horizontal scaling on the real control plane: the scale subresource, HPAs,
read replicas and the pooler, Kong routes and Consul registrations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import metadata_of, name_of, spec_of, status_of, uid_of
from tests.support.tenants import eventually

NAME = "scaly"
NS = f"tenant-{NAME}"
APPS = [
    {"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080,
     "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}},
    {"name": "web", "image": "registry.example.com/shop/web:1.0.0", "port": 3000,
     "path": "/", "replicas": 2},
]


def _spec(**components: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"consul": {"enabled": True}, "apps": APPS}
    base.update(components)
    return {"components": base}


@pytest.fixture(scope="module")
def scaly(cluster: ClusterHandle, operator: OperatorProcess) -> Iterator[str]:
    tenants.apply(cluster, tenants.small_tenant(NAME, **_spec(kong={"replicas": 2})))
    tenants.wait_condition(cluster, NAME, "Ready", "True")
    yield NAME
    tenants.discard(cluster, NAME)  # in the background; the name is not reused


def _kong_pods(cluster: ClusterHandle) -> dict[str, str | None]:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        NS, label_selector="app.kubernetes.io/component=kong").items
    return {uid_of(p): status_of(p).phase for p in pods
            if not metadata_of(p).deletion_timestamp}


def _scale(cluster: ClusterHandle, replicas: int) -> dict[str, Any]:
    cluster.kubectl("scale", f"sft/{NAME}", "-n", NS, f"--replicas={replicas}")
    return _converged(cluster, replicas)


def _converged(cluster: ClusterHandle, replicas: int) -> dict[str, Any]:
    """The tenant once its gateway runs ``replicas`` ready pods and its status says so."""
    def converged() -> dict[str, Any] | None:
        tenant = tenants.get(cluster, NAME) or {}
        st = tenant.get("status") or {}
        ready = tenants.condition(tenant, "Ready") or {}
        running = [p for p in _kong_pods(cluster).values() if p == "Running"]
        if (st.get("replicas") == replicas and st.get("readyReplicas", 0) == replicas
                and ready.get("status") == "True" and len(running) == replicas
                and st.get("observedGeneration") == tenant["metadata"]["generation"]):
            return tenant
        return None

    result: dict[str, Any] = eventually(converged, timeout=90, interval=0.5)
    return result


def test_kubectl_scale_adds_pods_without_restarting_running_ones(
    cluster: ClusterHandle, scaly: str
) -> None:
    before = set(_kong_pods(cluster))
    assert len(before) == 2
    tenant = _scale(cluster, 4)
    after = set(_kong_pods(cluster))
    assert before <= after and len(after) == 4
    assert tenant["spec"]["components"]["kong"]["replicas"] == 4
    assert tenant["status"]["selector"] == (
        f"app.kubernetes.io/component=kong,stackforge.io/tenant={NAME}")
    scale = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object_scale(
        "stackforge.io", "v1alpha1", NS, "stackforgetenants", NAME)
    assert isinstance(scale, dict)  # the client types a custom object as a bare object
    assert scale["spec"]["replicas"] == 4 and scale["status"]["replicas"] == 4
    # The PodDisruptionBudget follows the replica count.
    pdb = client.PolicyV1Api(cluster.api).read_namespaced_pod_disruption_budget("kong", NS)
    assert spec_of(pdb).max_unavailable == 1
    assert status_of(pdb).expected_pods == 4


def test_scale_to_zero_and_back_converges_each_time(cluster: ClusterHandle, scaly: str) -> None:
    policy = client.PolicyV1Api(cluster.api)
    for replicas in (0, 3, 0, 3):
        _scale(cluster, replicas)
        try:
            policy.read_namespaced_pod_disruption_budget("kong", NS)
            has_pdb = True
        except ApiException as error:
            assert error.status == 404
            has_pdb = False
        assert has_pdb == (replicas > 1)


def test_spec_change_scales_too(cluster: ClusterHandle, scaly: str) -> None:
    tenants.apply(cluster, tenants.small_tenant(NAME, **_spec(kong={"replicas": 1})))
    # Ready holds while scaling down (one pod serves), and status.replicas counts the
    # gateway's pods until its Deployment has seen the others go: the first Ready of
    # the new generation may still say 3 (a CI run saw it). Wait for the status.
    tenant = _converged(cluster, 1)
    assert tenant["status"]["replicas"] == 1
    assert len(_kong_pods(cluster)) == 1


def test_app_hpas_resolve_their_scale_targets(cluster: ClusterHandle, scaly: str) -> None:
    autoscaling = client.AutoscalingV2Api(cluster.api)
    app_hpa = spec_of(autoscaling.read_namespaced_horizontal_pod_autoscaler("api", NS))
    assert app_hpa.min_replicas == 2 and app_hpa.max_replicas == 5
    assert app_hpa.metrics is not None and app_hpa.metrics[0].resource is not None
    assert app_hpa.metrics[0].resource.target.average_utilization == 80
    assert app_hpa.behavior is not None and app_hpa.behavior.scale_down is not None
    assert app_hpa.behavior.scale_down.stabilization_window_seconds == 300

    def able_to_scale() -> bool:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("api", NS)
        conditions = {c.type: c for c in status_of(hpa).conditions or []}
        able = conditions.get("AbleToScale")
        return able is not None and able.status == "True" and able.reason == "SucceededGetScale"

    # The controller-manager's HPA controller read the Deployment's scale
    # subresource (CPU metrics themselves need a metrics server, absent here).
    eventually(able_to_scale, timeout=90)
    events = client.CoreV1Api(cluster.api).list_namespaced_event(NS).items
    assert not [e for e in events if e.reason == "FailedGetScale"]
    if cluster.local is not None:
        log = cluster.local.component_logs()["kube-controller-manager"].read_text()
        assert f"failed to query scale subresource for Deployment/{NS}/api" not in log


TENANT_HPA = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "tenant-gateway", "namespace": NS},
    "spec": {
        "scaleTargetRef": {"apiVersion": "stackforge.io/v1alpha1", "kind": "StackForgeTenant",
                           "name": NAME},
        "minReplicas": 3,
        "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
    },
}


def test_an_hpa_scales_the_tenant_through_its_scale_subresource(
    cluster: ClusterHandle, scaly: str
) -> None:
    """An HPA in the tenant's namespace targets the tenant itself (why it is namespaced)."""
    before = set(_kong_pods(cluster))
    _scale(cluster, 2)
    autoscaling = client.AutoscalingV2Api(cluster.api)
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(TENANT_HPA))
    try:
        # Below minReplicas the HPA controller raises the tenant to 3 by writing
        # its scale subresource (no metrics needed); the operator follows.
        tenant = _converged(cluster, 3)
        assert tenant["spec"]["components"]["kong"]["replicas"] == 3
        assert before <= set(_kong_pods(cluster)), "running gateway pods were replaced"
        hpa = status_of(autoscaling.read_namespaced_horizontal_pod_autoscaler(
            "tenant-gateway", NS))
        conditions = {c.type: c for c in hpa.conditions or []}
        assert conditions["AbleToScale"].status == "True", conditions["AbleToScale"]
        assert hpa.current_replicas == 3 or hpa.desired_replicas == 3
        events = client.CoreV1Api(cluster.api).list_namespaced_event(
            NS, field_selector="involvedObject.name=tenant-gateway").items
        reasons = {e.reason for e in events}
        assert "SuccessfulRescale" in reasons and "FailedGetScale" not in reasons, reasons
        if cluster.local is not None:
            log = cluster.local.component_logs()["kube-controller-manager"].read_text()
            failures = [line for line in log.splitlines()
                        if "failed to query scale subresource" in line
                        and "StackForgeTenant" in line]
            assert failures == []
    finally:
        autoscaling.delete_namespaced_horizontal_pod_autoscaler("tenant-gateway", NS)


def test_every_app_is_routed_by_kong_and_registered_in_consul(
    cluster: ClusterHandle, scaly: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    kong = yaml.safe_load(
        (core.read_namespaced_config_map("kong-config", NS).data or {})["kong.yml"])
    routes = {s["name"]: (s["url"], s["routes"][0]["paths"]) for s in kong["services"]}
    assert routes == {
        "api": (f"http://api.{NS}.svc:8080", ["/api"]),
        "web": (f"http://web.{NS}.svc:3000", ["/"]),
    }
    consul = json.loads(
        (core.read_namespaced_config_map("consul-services", NS).data or {})["services.json"])
    registered = {s["name"]: (s["address"], s["port"]) for s in consul["services"]}
    assert registered == {
        "api": (f"api.{NS}.svc", 8080),
        "web": (f"web.{NS}.svc", 3000),
    }
    # Each routed address is a real Service selecting the app's pods.
    for app in ("api", "web"):
        selector = spec_of(core.read_namespaced_service(app, NS)).selector
        assert selector is not None
        pods = core.list_namespaced_pod(NS, label_selector=",".join(
            f"{k}={v}" for k, v in selector.items())).items
        assert len(pods) >= 2


def test_read_replicas_and_pooler_follow_the_spec(cluster: ClusterHandle, scaly: str) -> None:
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)

    def app_env() -> dict[str, str]:
        template = spec_of(apps.read_namespaced_deployment("web", NS)).template
        container = spec_of(template).containers[0]
        assert container.env is not None
        return {e.name: e.value for e in container.env if e.value is not None}

    tenants.apply(cluster, tenants.small_tenant(NAME, **_spec(
        kong={"replicas": 1},
        postgres={"readReplicas": 2, "pooler": {"enabled": True, "defaultPoolSize": 30}})))
    tenants.wait_condition(cluster, NAME, "Ready", "True")
    assert spec_of(apps.read_namespaced_stateful_set("postgres-replica", NS)).replicas == 2
    assert (spec_of(core.read_namespaced_service("postgres-read", NS)).selector or {})[
        "app.kubernetes.io/component"] == "postgres-replica"
    assert status_of(apps.read_namespaced_deployment("pooler", NS)).ready_replicas == 1
    ini = (core.read_namespaced_config_map("pooler-config", NS).data or {})["pgbouncer.ini"]
    assert "default_pool_size = 30" in ini
    env = app_env()
    assert (env["DATABASE_HOST"], env["DATABASE_PORT"]) == ("pooler", "6432")
    assert env["DATABASE_READ_HOST"] == "postgres-read"

    tenants.apply(cluster, tenants.small_tenant(NAME, **_spec(
        kong={"replicas": 1}, postgres={"readReplicas": 0, "pooler": {"enabled": False}})))
    tenants.wait_condition(cluster, NAME, "Ready", "True")

    def gone() -> bool:
        names = {name_of(d) for d in apps.list_namespaced_deployment(NS).items}
        names |= {name_of(s) for s in apps.list_namespaced_stateful_set(NS).items}
        names |= {name_of(s) for s in core.list_namespaced_service(NS).items}
        return not names & {"pooler", "postgres-replica", "postgres-read"}

    eventually(gone, timeout=60)
    env = app_env()
    assert (env["DATABASE_HOST"], env["DATABASE_PORT"]) == ("postgres", "5432")
    assert "DATABASE_READ_HOST" not in env
