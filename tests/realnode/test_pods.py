"""Pods really run on the real node: the project's PostgreSQL image, DNS, Services,
volumes, logs/exec, and NetworkPolicy enforcement."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.devcluster.node.realnode import NODE_NAME
from tests.realnode import pods
from tests.support.clusters import ClusterHandle


@pytest.fixture
def ns(real_cluster: ClusterHandle) -> Iterator[str]:
    name = f"rn-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(real_cluster.api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(real_cluster.api).delete_namespace(name, propagation_policy="Background")


def test_the_node_is_real_and_ready(real_cluster: ClusterHandle) -> None:
    node = client.CoreV1Api(real_cluster.api).read_node(NODE_NAME)
    assert node.status is not None
    assert node.status.conditions is not None and node.status.node_info is not None
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert node.status.node_info.container_runtime_version.startswith("containerd://2.3")
    assert node.status.node_info.kubelet_version == "v1.36.3"


def test_project_postgres_image_runs_and_answers_exec(real_cluster: ClusterHandle,
                                                      ns: str) -> None:
    pods.apply(real_cluster, pods.postgres_pod("db", ns, {"app": "db"}))
    pods.wait_ready(real_cluster, ns, "db")

    version = pods.exec_in(real_cluster, ns, "db", "psql", "-U", "postgres", "-h",
                        "/var/run/postgresql", "-tAc", "select version()").stdout
    assert version.startswith("PostgreSQL 15."), version
    logs = real_cluster.kubectl("logs", "-n", ns, "db").stdout
    assert "database system is ready to accept connections" in logs

    # The container the kubelet runs is the project's image, as containerd sees it.
    status = client.CoreV1Api(real_cluster.api).read_namespaced_pod("db", ns).status
    assert status is not None and status.container_statuses is not None
    container = status.container_statuses[0]
    assert container.container_id is not None
    assert pods.image_containerd_runs(
        real_cluster, container.container_id) == pods.POSTGRES_IMAGE
    assert container.state is not None and container.state.running is not None


def test_service_names_resolve_and_route_to_pods(real_cluster: ClusterHandle, ns: str) -> None:
    pods.apply(real_cluster, pods.postgres_pod("db", ns, {"app": "db"}),
               pods.service("db", ns, {"app": "db"}),
               pods.postgres_pod("client", ns, {"app": "client"}))
    pods.wait_ready(real_cluster, ns, "db")
    pods.wait_ready(real_cluster, ns, "client")
    resolved = pods.exec_in(real_cluster, ns, "client", "getent", "hosts",
                     f"db.{ns}.svc.cluster.local").stdout
    service = client.CoreV1Api(real_cluster.api).read_namespaced_service("db", ns)
    assert service.spec is not None
    service_ip = service.spec.cluster_ip
    assert resolved.split()[0] == service_ip
    assert "accepting connections" in pods.wait_routed(real_cluster, ns, "client", "db")


def test_network_policy_is_enforced(real_cluster: ClusterHandle, ns: str) -> None:
    outsider_ns = f"{ns}-out"
    client.CoreV1Api(real_cluster.api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=outsider_ns)))
    try:
        pods.apply(real_cluster, pods.postgres_pod("db", ns, {"app": "db"}),
               pods.service("db", ns, {"app": "db"}),
               pods.postgres_pod("allowed", ns, {"role": "client"}),
               pods.postgres_pod("other", ns, {"role": "other"}),
               pods.postgres_pod("outsider", outsider_ns, {"role": "client"}))
        for namespace, pod in ((ns, "db"), (ns, "allowed"), (ns, "other"),
                               (outsider_ns, "outsider")):
            pods.wait_ready(real_cluster, namespace, pod)
        target = f"db.{ns}.svc.cluster.local"
        pods.wait_routed(real_cluster, outsider_ns, "outsider", target)  # before any policy

        pods.apply(real_cluster, {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db-from-clients", "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                  "ports": [{"port": 5432, "protocol": "TCP"}]}]},
        })
        deadline = time.monotonic() + 30
        while pods.reachable(real_cluster, outsider_ns, "outsider", target):
            assert time.monotonic() < deadline, "the policy was never enforced"
            time.sleep(1)
        assert not pods.reachable(real_cluster, ns, "other", target)
        assert pods.reachable(real_cluster, ns, "allowed", target)
    finally:
        client.CoreV1Api(real_cluster.api).delete_namespace(outsider_ns,
                                                            propagation_policy="Background")


def test_claims_get_local_volumes_whose_data_survives_the_pod(real_cluster: ClusterHandle,
                                                              ns: str) -> None:
    pod = pods.postgres_pod("db-0", ns, {"app": "db"})
    template = {"metadata": {"labels": {"app": "db"}}, "spec": pod["spec"]}
    template["spec"]["volumes"] = [v for v in template["spec"]["volumes"] if v["name"] != "data"]
    pods.apply(real_cluster, {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
            "template": template,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    })
    _wait_until_pod(real_cluster, ns, "db-0")
    pods.wait_ready(real_cluster, ns, "db-0")
    psql = ("psql", "-U", "postgres", "-h", "/var/run/postgresql", "-v", "ON_ERROR_STOP=1")
    pods.exec_in(real_cluster, ns, "db-0", *psql, "-c",
          "create table kept(v text); insert into kept values ('survives')")
    pods.replace_pod(real_cluster, ns, "db-0", timeout=150)
    kept = pods.exec_in(real_cluster, ns, "db-0", *psql, "-tAc", "select v from kept").stdout
    assert kept.strip() == "survives"
    claim = client.CoreV1Api(real_cluster.api).read_namespaced_persistent_volume_claim(
        "data-db-0", ns)
    assert claim.spec is not None and claim.spec.volume_name is not None
    volume = client.CoreV1Api(real_cluster.api).read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.local.path.startswith(str(real_cluster.local.run_dir))  # type: ignore[union-attr]


def _wait_until_pod(cluster: ClusterHandle, namespace: str, name: str) -> None:
    def exists() -> bool:
        result = cluster.kubectl("get", "pod", "-n", namespace, name, "-o", "json", check=False)
        return result.returncode == 0 and bool(json.loads(result.stdout))

    _eventually(exists, 60)


def _eventually(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s"
        time.sleep(0.5)
