"""reconcile/tenant_recovery.py against the API server: a tenant made again over
the claims an in-place recovery left starts its primary on the database's claim.

Claims outlive their tenant (whenDeleted: Retain), and which of them holds the
database was written only in the tenant's status. Made again in place (a
GitOps sync, a re-applied manifest), the tenant started postgres-0 on the
database as it was before the recovery, and served it as current. The nodes
are kwok's; nothing runs.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from stackforge_operator.reconcile import recovery, tenant
from tests.support import tenants
from tests.support.clusters import ClusterHandle

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


def _claim(cluster: ClusterHandle, namespace: str, ordinal: int, mark: str | None) -> None:
    annotations = {recovery.SERVING_ANNOTATION: mark} if mark else {}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"data-postgres-{ordinal}", "annotations": annotations},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))


def _first_ordinal(cluster: ClusterHandle, namespace: str) -> int | None:
    found = client.AppsV1Api(cluster.api).list_namespaced_stateful_set(namespace).items
    for statefulset in found:
        if statefulset.metadata and statefulset.metadata.name == "postgres":
            ordinals = statefulset.spec.ordinals if statefulset.spec else None
            return int(ordinals.start or 0) if ordinals else 0
    return None


def test_a_tenant_made_again_over_a_recoverys_claims_starts_on_its_database(
        cluster: ClusterHandle, namespace: str) -> None:
    name = f"again-{namespace[-12:]}"
    # What a tenant left: its first database, a recovery's (succeeded, marked),
    # and a later recovery's restore that was rolled back (marked on 1 again).
    _claim(cluster, namespace, 0, None)
    _claim(cluster, namespace, 1, "2026-12-06T09:00:00Z")
    _claim(cluster, namespace, 2, None)
    tenants.apply(cluster, tenants.small_tenant(name, namespace=namespace))

    tenant.reconcile(tenants.get(cluster, name, namespace) or {})

    assert _first_ordinal(cluster, namespace) == 1
    found = tenants.get(cluster, name, namespace) or {}
    record = found["status"]["recovery"]
    assert record["phase"] == "Adopted" and record["keptVolumes"] == [
        "data-postgres-0", "data-postgres-2"], record
    # Read again, the record holds the ordinal; nothing moves it back to 0.
    tenant.reconcile(tenants.get(cluster, name, namespace) or {})
    assert _first_ordinal(cluster, namespace) == 1


def test_a_tenant_made_again_over_unmarked_claims_starts_no_database(
        cluster: ClusterHandle, namespace: str) -> None:
    name = f"doubt-{namespace[-12:]}"
    _claim(cluster, namespace, 0, None)
    _claim(cluster, namespace, 1, None)
    tenants.apply(cluster, tenants.small_tenant(name, namespace=namespace))

    tenant.reconcile(tenants.get(cluster, name, namespace) or {})

    assert _first_ordinal(cluster, namespace) is None
    found = tenants.get(cluster, name, namespace) or {}
    stalled = tenants.condition(found, "Stalled") or {}
    assert stalled.get("reason") == "DatabaseClaimsAmbiguous", found.get("status")
    assert "data-postgres-0, data-postgres-1" in stalled["message"]

    # Marked by a person, as the message says: it starts on that claim.
    cluster.kubectl("annotate", "pvc", "data-postgres-1", "-n", namespace,
                    f"{recovery.SERVING_ANNOTATION}=2026-12-06T10:00:00Z")
    tenant.reconcile(tenants.get(cluster, name, namespace) or {})
    assert _first_ordinal(cluster, namespace) == 1
