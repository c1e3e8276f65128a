"""A tenant's stack on running pods: PostgreSQL from the project's image, Ready,
reachable by exec, its data surviving the pod."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import OPERATOR_NAMESPACE, RUNNER_LABEL
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import pods, stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle

# A client in the operator's namespace, which every tenant policy admits.
CONTROL = "postgres-control"


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
    assert pod.spec is not None and pod.status is not None
    assert pod.spec.node_name == "real-node-0"
    assert pod.status.container_statuses is not None
    postgres = next(s for s in pod.status.container_statuses if s.name == "postgres")
    assert postgres.state is not None and postgres.state.running is not None
    assert postgres.container_id is not None
    assert pods.image_containerd_runs(real_cluster, postgres.container_id) == pods.POSTGRES_IMAGE

    pods.replace_pod(real_cluster, ns, "postgres-0", timeout=180)
    assert _psql(real_cluster, ns, "select count(*) from orders") == "250"


def test_the_tenants_policies_keep_other_pods_from_its_database(
        real_cluster: ClusterHandle, tenant: str) -> None:
    """Enforced on the node: a pod of another namespace (even one labelled as a backup
    runner), or an unlisted pod of the tenant's own, cannot open a connection to
    PostgreSQL. (The allowed flows are proven by the backup test: its runner, in the
    tenant's namespace, reaches PostgreSQL and S3 through them.)"""
    ns = tenants.namespace_of(tenant)
    outside = f"{ns}-outside"
    tenants.ensure_namespace(real_cluster, outside)
    try:
        pods.apply(real_cluster, pods.postgres_pod("outsider", outside, {"role": "client"}),
                   pods.postgres_pod("fake-runner", outside, {RUNNER_LABEL: "backup"}),
                   pods.postgres_pod("stranger", ns, {"role": "client"}),
                   pods.postgres_pod(CONTROL, OPERATOR_NAMESPACE, {"role": "control"}))
        pods.wait_ready(real_cluster, outside, "outsider")
        pods.wait_ready(real_cluster, outside, "fake-runner")
        pods.wait_ready(real_cluster, ns, "stranger")
        pods.wait_ready(real_cluster, OPERATOR_NAMESPACE, CONTROL)
        target = f"postgres.{ns}.svc.cluster.local"
        # The control: a pod the policies admit (the operator's namespace) reaches the
        # database by the same name, through DNS, the Service and the pod network.
        # So the refusals below are the policy's.
        pods.wait_routed(real_cluster, OPERATOR_NAMESPACE, CONTROL, target)
        assert not pods.reachable(real_cluster, outside, "outsider", target)
        assert not pods.reachable(real_cluster, outside, "fake-runner", target)
        assert not pods.reachable(real_cluster, ns, "stranger", target)
    finally:
        client.CoreV1Api(real_cluster.api).delete_namespace(outside,
                                                            propagation_policy="Background")
        real_cluster.kubectl("delete", "pod", CONTROL, "-n", OPERATOR_NAMESPACE,
                             "--wait=false", "--ignore-not-found", check=False)


def test_a_primary_deleted_with_a_session_open_stops_at_once_and_cleanly(
        real_cluster: ClusterHandle, tenant: str) -> None:
    """PostgreSQL takes SIGTERM for a smart shutdown, which waits for every session
    to end: with an app's session open the server would be killed at the grace
    period's end and start again in crash recovery. The image's stop signal
    (SIGINT, a fast shutdown) ends the sessions and stops it cleanly at once."""
    ns = tenants.namespace_of(tenant)
    _psql(real_cluster, ns, "create table kept(id int); insert into kept values (1)")
    # An app's session over the network, from a pod the policies admit.
    pods.apply(real_cluster, pods.postgres_pod(CONTROL, OPERATOR_NAMESPACE, {"role": "control"}))
    pods.wait_ready(real_cluster, OPERATOR_NAMESPACE, CONTROL)
    password = stack.postgres_credentials(real_cluster, ns)[sn.POSTGRES_SUPERUSER_PASSWORD_KEY]
    held = subprocess.Popen(
        [*real_cluster.kubectl_argv, f"--kubeconfig={real_cluster.kubeconfig}", "exec", "-n",
         OPERATOR_NAMESPACE, CONTROL, "--", "psql", "-X",
         f"host=postgres.{ns}.svc.cluster.local user=postgres dbname=postgres "
         f"password={password}", "-c", "select pg_sleep(600)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        tenants.eventually(lambda: _psql(
            real_cluster, ns, "select count(*) from pg_stat_activity "
            "where query like 'select pg_sleep(600)%'") == "1", timeout=30)
        started = time.monotonic()
        real_cluster.kubectl("delete", "pod", "-n", ns, "postgres-0", "--wait=true",
                             timeout=180)
        took = time.monotonic() - started
    finally:
        if held.poll() is None:
            held.kill()
        held.wait()
        real_cluster.kubectl("delete", "pod", CONTROL, "-n", OPERATOR_NAMESPACE,
                             "--wait=false", "--ignore-not-found", check=False)
    assert took < 15, f"the primary took {took:.0f} s to stop"
    tenants.eventually(lambda: real_cluster.kubectl(
        "get", "pod", "-n", ns, "postgres-0", check=False).returncode == 0, timeout=60)
    pods.wait_ready(real_cluster, ns, "postgres-0", timeout=180)
    started_log = real_cluster.kubectl("logs", "-n", ns, "postgres-0", "-c", "postgres").stdout
    assert "database system was shut down at" in started_log, started_log
    assert "not properly shut down" not in started_log, started_log
    assert _psql(real_cluster, ns, "select count(*) from kept") == "1"
