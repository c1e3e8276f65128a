"""The Argo CD health check (Lua, as shipped in argocd-cm) on status objects from the API server."""

from __future__ import annotations

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.argocd import health
from tests.support.clusters import ClusterHandle
from tests.support.tenants import eventually


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

    # A spec change the operator has not observed yet: Progressing again.
    tenants.apply(cluster, tenants.small_tenant("argo-ok", tier="Growth"))
    eventually(lambda: _health(cluster, "argo-ok")[0] in ("Progressing", "Healthy"))
    tenants.wait_condition(cluster, "argo-ok", "Ready", "True")
    assert _health(cluster, "argo-ok")[0] == "Healthy"
