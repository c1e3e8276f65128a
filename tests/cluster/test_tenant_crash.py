"""SIGKILL the operator at random points while it provisions 20 tenants.

Deterministic names and server-side apply mean a restarted operator finishes
what the killed one started: in the end every tenant is Ready, every child
exists exactly once with its owner, and nothing is left over.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import yaml

from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import children, tenants
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import OperatorIdentity
from tests.support.tenants import eventually

TENANTS = [f"crash-{i:02d}" for i in range(20)]
KILL_POINTS = 10


def _labelled_children(cluster: ClusterHandle) -> list[tuple[str, str, str, str]]:
    """(kind, namespace, name, tenant) of every Namespace and object of a child kind,
    in any namespace, labelled for one of these tenants (a Namespace's own name
    stands for its namespace)."""
    found = json.loads(cluster.kubectl(
        "get", f"namespaces,{children.KINDS}", "--all-namespaces", "-o", "json",
        "-l", f"{TENANT_LABEL} in ({','.join(TENANTS)})").stdout)
    return [(item["kind"], meta.get("namespace", meta["name"]), meta["name"],
             meta["labels"][TENANT_LABEL])
            for item in found["items"] for meta in (item["metadata"],)]


def test_killed_operator_leaves_no_duplicates_or_orphans(
    cluster: ClusterHandle,
    operator_identity_installed: OperatorIdentity,
    tmp_path: Path,
) -> None:
    kubeconfig = operator_identity_installed.kubeconfig
    namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": tenants.namespace_of(n)}} for n in TENANTS]
    manifests = [tenants.small_tenant(n) for n in TENANTS]
    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input=yaml.safe_dump_all([*namespaces, *manifests]))
    rng = random.Random(20261127)
    env = {"STACKFORGE_RESYNC_SECONDS": "3"}
    kill_points = []
    try:
        for attempt in range(KILL_POINTS):
            operator = OperatorProcess(kubeconfig, tmp_path / f"operator-{attempt}.log",
                                       extra_env=env)
            operator.start()
            delay = rng.uniform(0.1, 3.0)
            time.sleep(delay)
            assert operator.process.popen is not None
            operator.process.popen.kill()  # SIGKILL: no cleanup of any kind
            operator.process.popen.wait()
            ready = sum(
                1 for n in TENANTS
                if (tenants.condition(tenants.get(cluster, n), "Ready") or {}).get("status")
                == "True")
            kill_points.append((round(delay, 2), ready, len(_labelled_children(cluster))))
        # Kill points must really fall while provisioning is under way: children
        # made, and not every tenant Ready yet.
        assert any(made and ready < len(TENANTS) for _, ready, made in kill_points), kill_points

        final = OperatorProcess(kubeconfig, tmp_path / "operator-final.log", extra_env=env)
        final.start()
        try:
            for name in TENANTS:
                tenants.wait_condition(cluster, name, "Ready", "True", timeout=240)
        finally:
            final.stop()

        wrong = [p for manifest in manifests for p in children.problems(cluster, manifest)]
        assert wrong == []
        # Nothing labelled for these tenants lives outside their namespaces.
        labelled = _labelled_children(cluster)
        assert labelled
        stray = [f"{kind}/{namespace}/{name} of {tenant}"
                 for kind, namespace, name, tenant in labelled
                 if namespace != tenants.namespace_of(tenant)]
        assert stray == []
    finally:
        for name in TENANTS:
            tenants.discard(cluster, name)
        for name in TENANTS:

            def gone(n: str = name) -> bool:
                return tenants.get(cluster, n) is None

            eventually(gone, timeout=180)
