"""The real-node cluster: control plane plus one kubelet/containerd node whose pods run.

One per session (a real node is host-global), started on first use. Its
teardown puts the host back and fails the session if anything differs from
before: sysctls, netfilter tables, links, network namespaces, mounts,
cgroups, well-known directories, processes.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.node.realnode import ImageArchive
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.devcluster.processes import processes_mentioning
from tests.realnode.operators import operator_running
from tests.realnode.s3_service import S3_SERVICE_NAME, s3_service
from tests.support import crds, failed_pods, operator_identity
from tests.support.clusters import ClusterHandle, local_handle
from tests.support.s3_server import S3Server

_TEST_START = pytest.StashKey[datetime]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A second early: the kubelet's finishedAt has whole seconds.
    item.stash[_TEST_START] = datetime.now(UTC) - timedelta(seconds=1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, None]:
    """A failed test's report gets what the containers that failed during it said
    (their pods may be gone before anyone looks)."""
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("real_cluster")
    if not report.failed or report.when == "teardown" or not isinstance(
            cluster, ClusterHandle) or _TEST_START not in item.stash:
        return
    try:
        found = failed_pods.report(cluster.api, item.stash[_TEST_START])
    except (ApiException, OSError) as error:
        found = f"(could not read the pods: {error})"
    if found:
        report.sections.append(("containers that failed during the test", found))


def project_images() -> list[ImageArchive]:
    """The project's own images, built from images/ (cached by a hash of their inputs)."""
    from stackforge_operator.devcluster import images

    return [ImageArchive(built.reference, built.archive_path, built.inputs)
            for built in images.ensure_images()]


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    if os.geteuid() != 0:
        pytest.fail("the real node needs root (kubelet, containerd, a bridge, iptables)")
    run_dir = tmp_path_factory.mktemp("realnode")
    local = LocalCluster(run_dir, nodes=0, real_node=True, images=project_images())
    local.start(timeout=180)
    try:
        yield local_handle(local)
    finally:
        local.stop()
        leftovers = local.alive_pids() + processes_mentioning(str(run_dir))
        problems = [f"process survived teardown: {pid}" for pid in leftovers]
        problems += local.host_differences
        if problems:
            raise RuntimeError("the real node did not leave the host as it found it:\n"
                               + "\n".join(problems))


@pytest.fixture(scope="session")
def real_operator_identity(
    real_cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> operator_identity.OperatorIdentity:
    """The CRDs and the operator's shipped ServiceAccount and RBAC, on the real-node cluster."""
    crds.install(real_cluster)
    path = tmp_path_factory.mktemp("real-operator-identity") / "kubeconfig"
    return operator_identity.install(real_cluster, path)


@pytest.fixture(scope="module")
def real_operator(
    real_operator_identity: operator_identity.OperatorIdentity,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator for a module (a module wanting other settings overrides this
    fixture with :func:`operator_running`)."""
    with operator_running(real_operator_identity, tmp_path_factory) as process:
        yield process


@pytest.fixture(scope="session")
def pod_s3(real_cluster: ClusterHandle) -> Iterator[S3Server]:
    """S3 over HTTPS on the node address, where pods (and the operator) reach it, and by
    the name S3_SERVICE_NAME (port 443) inside the cluster; one for every module (each
    test takes buckets of its own)."""
    local = real_cluster.local
    assert local is not None and local.node is not None
    node_ip = local.node.network.node_ip
    server = S3Server(host=node_ip, tls=True,
                      server_names=(S3_SERVICE_NAME, f"{S3_SERVICE_NAME}.cluster.local"))
    server.start()
    try:
        real_cluster.kubectl("apply", "--server-side", "-f", "-",
                             input=yaml.safe_dump_all(s3_service(node_ip, server.port)))
        yield server
    finally:
        server.stop()
