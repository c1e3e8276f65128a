"""A tenant's stack on running pods: PostgreSQL from the project's image, Ready,
reachable by exec, its data surviving the pod."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from stackforge_operator.devcluster.node.runtime import K8S_NAMESPACE
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle

# What the test cluster's catalog (registry prefix "localhost") names.
POSTGRES_IMAGE = "localhost/stackforge/postgres:15"


@pytest.fixture
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    name = f"rn-{uuid.uuid4().hex[:5]}"
    tenants.apply(real_cluster, stack.postgres_only(name))
    stack.wait_ready(real_cluster, name)
    yield name
    tenants.discard(real_cluster, name)


def _psql(cluster: ClusterHandle, namespace: str, sql: str) -> str:
    return stack.psql(cluster, namespace, sql)


def test_tenant_postgres_runs_the_project_image_and_keeps_its_data(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    assert _psql(real_cluster, ns, "select version()").startswith("PostgreSQL 15.")
    _psql(real_cluster, ns, "create table orders(id int primary key);"
                            "insert into orders select generate_series(1, 250)")

    core = client.CoreV1Api(real_cluster.api)
    pod = core.read_namespaced_pod("postgres-0", ns)
    assert pod.spec.node_name == "real-node-0"
    postgres = next(s for s in pod.status.container_statuses if s.name == "postgres")
    assert postgres.state.running is not None
    local = real_cluster.local
    assert local is not None and local.node is not None and local.node.tools_dir is not None
    listing = subprocess.run(
        [str(local.node.tools_dir / "ctr"), f"--address={local.node.runtime_paths.socket}",
         f"--namespace={K8S_NAMESPACE}", "containers", "list"],
        capture_output=True, text=True, check=True).stdout
    row = next(r for r in listing.splitlines()
               if r.startswith(postgres.container_id.split("://", 1)[1]))
    assert POSTGRES_IMAGE in row

    real_cluster.kubectl("delete", "pod", "-n", ns, "postgres-0", "--wait=true")
    def replaced() -> bool:
        try:
            return bool(core.read_namespaced_pod("postgres-0", ns).metadata.uid
                        != pod.metadata.uid)
        except client.ApiException:
            return False  # between the old pod and its replacement

    tenants.eventually(replaced, timeout=60)
    real_cluster.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/postgres-0",
                         "--timeout=120s", timeout=130)
    assert _psql(real_cluster, ns, "select count(*) from orders") == "250"
