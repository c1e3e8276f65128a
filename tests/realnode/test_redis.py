"""Redis on the real node, from the project's image through the image catalog: a
password is required, data lives on the volume across a pod restart, the
exporter beside it answers a scraper where the metrics flow allows one only,
and isolating the tenant closes the sessions already open, refuses new ones,
and lifting it lets the app in again, data intact."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.builders.exporters import REDIS_EXPORTER_PORT
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import pods, stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import spec_of, status_of

# What the project's image carries (Debian bookworm's redis-server 7.0).
REDIS_VERSION = "7.0"
REDIS_IMAGE = f"localhost/stackforge/redis:{REDIS_VERSION}"


def redis_and_an_app(name: str) -> dict[str, Any]:
    """Redis, and the app whose flow to it the isolation test uses."""
    return tenants.small_tenant(name, components={
        "postgres": {"enabled": False},
        "redis": {"enabled": True, "version": REDIS_VERSION, "storage": "1Gi"},
        "kong": {"replicas": 0},
        "apps": [{"name": "api", "image": TESTAPP_IMAGE, "port": 8080, "replicas": 1}],
    })


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    name = f"rd-{uuid.uuid4().hex[:5]}"
    tenants.apply(real_cluster, redis_and_an_app(name))
    try:
        stack.wait_ready(real_cluster, name)
        yield name
    finally:
        tenants.discard(real_cluster, name)


def _redis_cli(cluster: ClusterHandle, namespace: str, *args: str,
               authenticated: bool = True) -> subprocess.CompletedProcess[str]:
    # The container's REDISCLI_AUTH (from the tenant's Secret) authenticates
    # redis-cli; without it, the client is anyone who reaches the port.
    prefix = () if authenticated else ("env", "-u", "REDISCLI_AUTH")
    return cluster.kubectl("exec", "-n", namespace, "redis-0", "-c", "redis", "--",
                           *prefix, "redis-cli", *args, check=False)


def test_runs_the_project_image_and_refuses_commands_without_the_password(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    status = client.CoreV1Api(real_cluster.api).read_namespaced_pod("redis-0", ns).status
    assert status is not None and status.container_statuses is not None
    redis = next(c for c in status.container_statuses if c.name == "redis")
    assert redis.container_id is not None
    assert pods.image_containerd_runs(real_cluster, redis.container_id) == REDIS_IMAGE
    refused = _redis_cli(real_cluster, ns, "set", "intruder", "1", authenticated=False)
    assert "NOAUTH" in refused.stdout + refused.stderr
    assert _redis_cli(real_cluster, ns, "exists", "intruder").stdout.strip() == "0"
    assert _redis_cli(real_cluster, ns, "ping").stdout.strip() == "PONG"


def test_data_survives_the_pod(real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    assert _redis_cli(real_cluster, ns, "set", "order:1", "paid").stdout.strip() == "OK"
    pods.replace_pod(real_cluster, ns, "redis-0")
    assert _redis_cli(real_cluster, ns, "get", "order:1").stdout.strip() == "paid"


def test_exporter_answers_a_scraper_namespace_and_no_other(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    redis_ip = status_of(client.CoreV1Api(real_cluster.api).read_namespaced_pod(
        "redis-0", ns)).pod_ip
    url = f"http://{redis_ip}:{REDIS_EXPORTER_PORT}/metrics"
    scraped, outsider = pods.scrape_from_a_scraper_and_an_outsider(real_cluster, ns, url)
    # The exporter logged in with the tenant's password: Redis answers it.
    assert "redis_up 1" in scraped
    assert outsider == 1


def test_isolation_closes_open_sessions_refuses_new_ones_and_lifting_restores(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    assert _redis_cli(real_cluster, ns, "set", "cart:7", "kept").stdout.strip() == "OK"
    service_ip = spec_of(client.CoreV1Api(real_cluster.api).read_namespaced_service(
        "redis", ns)).cluster_ip
    target = f"{service_ip}:6379"
    # A pod the tenant's policies treat as its app "api" (which may reach Redis).
    pods.apply(real_cluster, pods.probe_config_map(ns),
               pods.probe_pod("holder", ns, pods.app_labels(tenant)))
    pods.wait_ready(real_cluster, ns, "holder")
    assert pods.probe_reaches(real_cluster, ns, "holder", target)

    outcome = pods.held_connection_outcome(
        real_cluster, ns, "holder", target,
        lambda: tenants.set_isolation(real_cluster, tenant, True))
    assert outcome == "closed", outcome
    tenants.wait_condition(real_cluster, tenant, "Isolated", "True", timeout=60)
    # New sessions refused: Redis answers through its Service (the operator's
    # stand-in reaches it), and the app does not.
    with pods.operator_stand_in(real_cluster, "redis-control") as control:
        tenants.eventually(lambda: pods.refused_but_reached_by(
            real_cluster, ns, "holder", target, control), timeout=90, interval=1)

    tenants.set_isolation(real_cluster, tenant, False)
    stack.wait_ready(real_cluster, tenant)
    tenants.eventually(lambda: pods.probe_reaches(real_cluster, ns, "holder", target),
                       timeout=90, interval=1)
    assert _redis_cli(real_cluster, ns, "get", "cart:7").stdout.strip() == "kept"
