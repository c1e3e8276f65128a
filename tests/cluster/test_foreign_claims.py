"""A tenant never mounts the kept claims of a former tenant of another name
(reconcile/foreign_claims.py), on the kwok cluster: no pod needs to run, the
StatefulSet is either made or not."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.reconcile import tenant
from tests.support import tenants
from tests.support.clusters import ClusterHandle

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


@pytest.fixture(autouse=True)
def _names_free(cluster: ClusterHandle) -> None:
    tenants.remove_namesakes(cluster, "newcomer")


def _postgres_made(cluster: ClusterHandle, namespace: str) -> bool:
    try:
        client.AppsV1Api(cluster.api).read_namespaced_stateful_set("postgres", namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_a_tenant_of_another_name_does_not_mount_a_former_tenants_kept_claims(
        cluster: ClusterHandle, namespace: str) -> None:
    """Claims outlive their tenant; a StatefulSet takes any claim of its name. A
    tenant of another name made in the namespace ran its PostgreSQL on the former
    tenant's database: its apps read the other customer's rows."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-postgres-0", "labels": {TENANT_LABEL: "former"}},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    tenants.apply(cluster, tenants.small_tenant("newcomer", namespace=namespace))

    tenant.reconcile(tenants.get(cluster, "newcomer", namespace) or {})

    ready = tenants.condition(tenants.get(cluster, "newcomer", namespace), "Ready") or {}
    assert ready.get("reason") == "ForeignVolumeClaims", ready
    assert "data-postgres-0 (tenant former)" in ready["message"], ready
    assert not _postgres_made(cluster, namespace)

    # Given to it by a person: taken.
    cluster.kubectl("label", "-n", namespace, "--overwrite", "pvc", "data-postgres-0",
                    f"{TENANT_LABEL}=newcomer")
    tenant.reconcile(tenants.get(cluster, "newcomer", namespace) or {})
    assert _postgres_made(cluster, namespace)
    ready = tenants.condition(tenants.get(cluster, "newcomer", namespace), "Ready") or {}
    assert ready.get("reason") != "ForeignVolumeClaims", ready
