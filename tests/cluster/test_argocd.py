"""The Argo CD health check (Lua, as shipped in argocd-cm) on status objects from the API server."""

from __future__ import annotations

import json

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.argocd import health
from tests.support.clusters import ClusterHandle


def _health(cluster: ClusterHandle, name: str) -> tuple[str, str]:
    found = tenants.get(cluster, name)
    assert found is not None
    return health("StackForgeTenant", found)


def test_tenant_health_in_each_state(
    cluster: ClusterHandle, operator: OperatorProcess, cleanup: list[str]
) -> None:
    cleanup.extend(["argo-ok", "argo-stalled", "argo-paused"])
    tenants.apply(cluster, tenants.small_tenant("argo-ok"))
    # Right after creation, before the operator caught up: Progressing.
    assert _health(cluster, "argo-ok")[0] == "Progressing"
    tenants.wait_condition(cluster, "argo-ok", "Ready", "True")
    assert _health(cluster, "argo-ok")[0] == "Healthy"

    tenants.apply(cluster, tenants.small_tenant("argo-stalled", notifications={
        "slack": {"webhookUrlSecretRef": {"name": "missing", "key": "url"}}}))
    tenants.wait_condition(cluster, "argo-stalled", "Stalled", "True")
    status, message = _health(cluster, "argo-stalled")
    assert status == "Degraded" and "MissingSecret" in message

    tenants.apply(cluster, tenants.small_tenant("argo-paused", suspend=True))
    tenants.wait_condition(cluster, "argo-paused", "Ready", "True")
    assert _health(cluster, "argo-paused")[0] == "Suspended"

    # A spec change the operator has not observed yet: Progressing again. The
    # object the API server answers the change with has the new generation and
    # the status of the old one, whatever the operator does next.
    changed = json.loads(cluster.kubectl(
        "apply", "--server-side", "--field-manager=tests", "--force-conflicts", "-o", "json",
        "-f", "-", input=json.dumps(tenants.small_tenant("argo-ok", tier="Growth"))).stdout)
    assert changed["metadata"]["generation"] > changed["status"]["observedGeneration"]
    assert health("StackForgeTenant", changed)[0] == "Progressing"
    tenants.wait_condition(cluster, "argo-ok", "Ready", "True")
    assert _health(cluster, "argo-ok")[0] == "Healthy"
