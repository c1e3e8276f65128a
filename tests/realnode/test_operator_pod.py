"""The operator as the chart installs it, in pods on the real node.

Every other module runs the operator as a host process, and kwok's nodes only
mark the chart's pods Running (tests/cluster/test_helm.py): here the chart's
Deployment runs its two peered replicas from the project's operator image under
the chart's own security context and probes, they reach the API server from the
pod network with the ServiceAccount's token, and the active one reconciles a
tenant to Ready on running pods while the other stands by. The release goes
into a namespace of its own, not stackforge-system, as `helm install -n` does:
the tenant's NetworkPolicies admit the operator from wherever its pod runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stackforge_operator.devcluster.images import PROJECT_CATALOG
from stackforge_operator.devcluster.node.runtime import LOCAL_REGISTRY
from tests.realnode import pods, stack
from tests.support import helm, operator_identity, tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, spec_of, status_of

RELEASE = "stackforge"
DEPLOYMENT = "stackforge-operator"
# Not the manifests' stackforge-system (the session's host-process operators' own).
CHART_NAMESPACE = "stackforge-chart"


def _values(directory: Path) -> Path:
    """The chart's values for this node: the operator image as imported, and the
    catalog the host-process operators get (every image one the node holds)."""
    repository, tag = pods.OPERATOR_IMAGE.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "images": {"registry": LOCAL_REGISTRY, "overrides": dict(PROJECT_CATALOG)},
        "resyncSeconds": 5,
        "stalledRecheckSeconds": 5,
        # Usage read at every reconcile and a kubelet's answer kept 2 s (not 300 and 60).
        "extraEnv": [{"name": "STACKFORGE_USAGE_REFRESH_SECONDS", "value": "0"},
                     {"name": "STACKFORGE_KUBELET_STATS_SECONDS", "value": "2"}],
    }
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _scope(doc: dict[str, Any]) -> list[str]:
    return ["-n", doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []


def _exists(cluster: ClusterHandle, doc: dict[str, Any]) -> bool:
    found = cluster.kubectl("get", doc["kind"], doc["metadata"]["name"], *_scope(doc),
                            "--ignore-not-found", "-o", "name", check=False)
    return found.returncode == 0 and bool(found.stdout.strip())


@pytest.fixture(scope="module")
def installed(real_cluster: ClusterHandle,
              real_operator_identity: operator_identity.OperatorIdentity,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """The chart's templates applied (its CRDs are the session's already); after
    the module, what it made goes, and the session's identity is as it shipped."""
    values = _values(tmp_path_factory.mktemp("chart"))
    docs = [d for d in yaml.safe_load_all(helm.template_text(
        release=RELEASE, namespace=CHART_NAMESPACE, value_files=[values]))
        if d]
    tenants.ensure_namespace(real_cluster, CHART_NAMESPACE)
    client.CoreV1Api(real_cluster.api).patch_namespace(CHART_NAMESPACE, {"metadata": {
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    made = [d for d in docs if not _exists(real_cluster, d)]
    real_cluster.kubectl("apply", "--server-side", "--force-conflicts",
                         "--field-manager=stackforge-chart-test", "-f", "-",
                         input=yaml.safe_dump_all(docs))
    try:
        yield docs
    finally:
        for doc in reversed(made):
            real_cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"], *_scope(doc),
                                 "--ignore-not-found", "--wait=true", timeout=180)
        real_cluster.kubectl("delete", "namespace", CHART_NAMESPACE, "--wait=true",
                             timeout=180)
        # The session's identity as it ships (the chart's cluster-wide objects
        # may have shared its names).
        operator_identity.install(real_cluster, real_operator_identity.kubeconfig)


def test_the_charts_operator_runs_on_the_node_and_reconciles_a_tenant(
        real_cluster: ClusterHandle, installed: list[dict[str, Any]]) -> None:
    namespace = CHART_NAMESPACE
    # The image starts as the chart runs it (non-root, read-only root, every
    # capability dropped) and passes the chart's own probes.
    waited = real_cluster.kubectl("wait", "-n", namespace, "--for=condition=Available",
                                  "--timeout=180s", f"deployment/{DEPLOYMENT}", timeout=200)
    assert "condition met" in waited.stdout, waited.stdout + waited.stderr
    core = client.CoreV1Api(real_cluster.api)
    operators = core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/name={DEPLOYMENT}").items
    names = [name_of(p) for p in operators]
    assert len(operators) == 2, names
    for pod in operators:
        node = spec_of(pod).node_name
        assert node is not None and not node.startswith("kwok-"), node
        [container] = status_of(pod).container_statuses or []
        assert container.ready and container.restart_count == 0, container

    name = f"inpod-{uuid.uuid4().hex[:5]}"
    tenants.apply(real_cluster, stack.postgres_only(name))
    try:
        stack.wait_ready(real_cluster, name, timeout=300)
        ns = tenants.namespace_of(name)
        assert stack.psql(real_cluster, ns, "SELECT 1") == "1"

        # One replica reconciled it; the other stood by (peering).
        def applied_by() -> list[str]:
            return [pod for pod in names if f"tenant {name}: applied" in real_cluster.kubectl(
                "logs", "-n", namespace, pod, check=False).stdout]
        assert len(applied_by()) == 1, applied_by()

        # The operator's pods reach the tenant's (its checks, the exporters): the
        # tenant's policies admit them from this namespace. Named stackforge-system
        # only before, so this connection was refused.
        primary = core.read_namespaced_pod("postgres-0", ns)
        address = status_of(primary).pod_ip
        assert address is not None
        reached = real_cluster.kubectl(
            "exec", "-n", namespace, names[0], "--", "python3", "-c",
            "import socket, sys; socket.create_connection((sys.argv[1], 5432), 5).close()",
            address, check=False, timeout=30)
        assert reached.returncode == 0, reached.stderr

        # From its pod it reads the kubelet with a token of the release's kubelet
        # reader (its own account may not read node statistics): the database
        # volume's figure comes.
        def measured() -> dict[str, Any] | None:
            usage = ((tenants.get(real_cluster, name) or {}).get("status") or {}).get(
                "usage") or {}
            claims = {v["claim"] for v in usage.get("volumes") or []}
            return usage if "data-postgres-0" in claims else None

        try:
            usage = tenants.eventually(measured, timeout=90, interval=2)
        except AssertionError:
            status = (tenants.get(real_cluster, name) or {}).get("status") or {}
            raise AssertionError(f"no volume figures: {status.get('usage')}") from None
        assert usage["volumesMeasuredBy"] == "kubelet" and "volumesUnmeasured" not in usage
    finally:
        tenants.discard(real_cluster, name)
