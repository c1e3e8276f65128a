"""Chaos on the real node (issue #17, case 5): kubelet and containerd killed
together and started again under a running tenant.

Containers belong to their shims, not to containerd, and the kubelet finds its
pods again from the runtime: every pod keeps its uid, its containers and their
restart counts, the tenant is Ready again (or never left it), and the data is
all there.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.realnode import pods, stack
from tests.realnode.operators import operator_running
from tests.support import operator_identity, tenants
from tests.support.clusters import ClusterHandle

pytestmark = pytest.mark.chaos

DOWN_SECONDS = 10


def _heartbeat_after(cluster: ClusterHandle, node: str, moment: datetime) -> bool:
    """The node's kubelet has renewed its lease since ``moment`` (the node's status
    itself is written only when it changes, or every 5 minutes)."""
    lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(node, "kube-node-lease")
    assert lease.spec is not None and lease.spec.renew_time is not None
    return bool(lease.spec.renew_time > moment)


def _kubelet_knows(cluster: ClusterHandle, node: str, namespace: str, pod: str) -> bool:
    """The node's kubelet has the pod in its own list again (its /pods, through the API
    server's node proxy). A restarted kubelet renews its lease before its pod list
    from the API server is in: until then it answers an exec "pod does not exist"."""
    try:
        response = client.CoreV1Api(cluster.api).connect_get_node_proxy_with_path(
            node, "pods", _preload_content=False)
        # Not the str the client's annotation says: with _preload_content=False it
        # returns the raw urllib3 response.
        found = json.loads(response.data)  # type: ignore[attr-defined]
    except ApiException:
        return False  # its server not listening yet
    return any(item["metadata"]["namespace"] == namespace and item["metadata"]["name"] == pod
               for item in found.get("items") or [])


def test_running_pods_survive_a_kubelet_and_containerd_restart(
        real_cluster: ClusterHandle,
        real_operator_identity: operator_identity.OperatorIdentity,
        tmp_path_factory: pytest.TempPathFactory,
        record_property: Callable[[str, object], None]) -> None:
    local = real_cluster.local
    assert local is not None and local.node is not None
    node = local.node.name
    name = f"nr-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    manifest = stack.postgres_and_app(name)
    try:
        with operator_running(real_operator_identity, tmp_path_factory):
            tenants.apply(real_cluster, manifest)
            stack.wait_ready(real_cluster, name)
            stack.psql(real_cluster, ns, stack.SEED_SQL, as_app=True)
            seeded = stack.psql(real_cluster, ns, stack.ORDERS_CHECKSUM_SQL)
            started = stack.psql(real_cluster, ns, "SELECT pg_postmaster_start_time()")
            before = pods.containers_of(real_cluster, ns)
            assert {"postgres-0"} < set(before), before

            killed_at = datetime.now(UTC)
            local.component("kubelet").kill()
            local.component("containerd").kill()
            time.sleep(DOWN_SECONDS)
            # The tenant's processes ran on meanwhile: their containers' shims hold them.
            local.restart_component("containerd")
            local.restart_component("kubelet")
            back = time.monotonic()
            tenants.eventually(lambda: _heartbeat_after(real_cluster, node, killed_at),
                               timeout=60, interval=1)
            node_back = time.monotonic() - back
            tenants.eventually(lambda: _kubelet_knows(real_cluster, node, ns, "postgres-0"),
                               timeout=60, interval=0.5)
            stack.wait_ready(real_cluster, name, timeout=120)
            tenant_back = time.monotonic() - back

            assert pods.containers_of(real_cluster, ns) == before
            assert stack.psql(real_cluster, ns, stack.ORDERS_CHECKSUM_SQL) == seeded
            # The same server process all along, not one started again.
            assert stack.psql(real_cluster, ns, "SELECT pg_postmaster_start_time()") == started
            # The node still starts new containers: a pod deleted comes back (a new
            # one, Ready; the tenant's Ready alone may still be the old pods').
            apps = "app.kubernetes.io/component=app"
            old_apps = pods.ready_uids(real_cluster, ns, apps)
            assert old_apps
            real_cluster.kubectl("delete", "pod", "-n", ns, "-l", apps, "--wait=true")
            tenants.eventually(lambda: pods.ready_uids(real_cluster, ns, apps) - old_apps,
                               timeout=120, interval=1)
            stack.wait_ready(real_cluster, name, timeout=120)
        record_property("chaos", f"kubelet and containerd killed for {DOWN_SECONDS} s: "
                                 f"{len(before)} pods kept, no restart; node Ready "
                                 f"{node_back:.1f} s and tenant Ready {tenant_back:.1f} s "
                                 "after their return")
    finally:
        tenants.discard(real_cluster, name)
