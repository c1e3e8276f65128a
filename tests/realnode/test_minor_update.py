"""A minor update: the PostgreSQL image of the same major changes (a new tag in the
image catalog, as a security update would bring), the pods roll onto it, and the
data stays. (A major change is refused at admission: tests/cluster/test_tenant.py.)"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from stackforge_operator.devcluster.images import PROJECT_CATALOG
from stackforge_operator.devcluster.node.runtime import LOCAL_REGISTRY
from tests.realnode import pods, stack
from tests.realnode.operators import operator_running
from tests.support import operator_identity, tenants
from tests.support.clusters import ClusterHandle

UPDATED = f"{LOCAL_REGISTRY}/stackforge/postgres:15-minor"


def primary_image(cluster: ClusterHandle, namespace: str) -> tuple[str, bool] | None:
    """The primary pod's image and readiness; None while it is being replaced (the
    rolling update deletes the pod before its successor exists)."""
    try:
        pod = client.CoreV1Api(cluster.api).read_namespaced_pod("postgres-0", namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    assert pod.spec is not None
    server = next(c for c in pod.spec.containers if c.name == "postgres")
    assert server.image is not None  # a pod's containers always name theirs
    return server.image, pods.is_ready(pod)


def test_a_new_image_of_the_same_major_rolls_the_pods_and_keeps_the_data(
        real_cluster: ClusterHandle,
        real_operator_identity: operator_identity.OperatorIdentity,
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    name = f"mu-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    pods.tag_image(real_cluster, pods.POSTGRES_IMAGE, UPDATED)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(
        {**PROJECT_CATALOG, "postgres": "stackforge/postgres:{major}-minor"}))
    try:
        with operator_running(real_operator_identity, tmp_path_factory):
            tenants.apply(real_cluster, stack.postgres_only(name))
            stack.wait_ready(real_cluster, name)
            stack.psql(real_cluster, ns, stack.SEED_SQL, as_app=True)
            current = primary_image(real_cluster, ns)
            assert current is not None and current[0] == pods.POSTGRES_IMAGE
        # The operator restarts with the new catalog entry (the way an operator
        # upgrade or a mirror's new tag arrives).
        with operator_running(real_operator_identity, tmp_path_factory,
                              STACKFORGE_IMAGE_CATALOG=str(catalog)):
            tenants.eventually(lambda: primary_image(real_cluster, ns) == (UPDATED, True),
                               timeout=180, interval=2)
            stack.wait_ready(real_cluster, name)
            counted = stack.psql(real_cluster, ns, "SELECT count(*) FROM shop.orders")
            assert counted == str(stack.ORDERS)
    finally:
        tenants.discard(real_cluster, name)
