"""SIGKILL the operator at random points while it provisions 20 tenants.

Deterministic names and server-side apply mean a restarted operator finishes
what the killed one started: in the end every tenant is Ready, every child
exists exactly once with its owner, and nothing is left over.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import yaml
from kubernetes import client

from stackforge_operator.builders import credentials, stack
from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.builders.secrets_names import POSTGRES_ADMIN_ROLES_SECRET
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import OperatorIdentity
from tests.support.tenants import eventually

TENANTS = [f"crash-{i:02d}" for i in range(20)]
KILL_POINTS = 10


def _expected_children(name: str, spec: dict[str, object]) -> set[tuple[str, str]]:
    t = resolve(name, StackForgeTenantSpec.model_validate(spec),
                namespace=tenants.namespace_of(name))
    names = list(credentials.wanted_keys(t))
    if t.postgres.enabled:
        # Written by the reconcile beside the credentials (reconcile/tenant.py).
        names.append(POSTGRES_ADMIN_ROLES_SECRET)
    secrets = [{"kind": "Secret", "metadata": {"name": n}} for n in names]
    children = stack.desired_children(t, secrets=secrets, tls=None, rotation=None)
    return {(m["kind"], m["metadata"]["name"]) for m in children if m["kind"] != "Namespace"}


def _live_children(cluster: ClusterHandle, name: str) -> list[dict[str, object]]:
    kinds = ("secrets,configmaps,services,resourcequotas,limitranges,deployments,statefulsets,"
             "networkpolicies,poddisruptionbudgets,horizontalpodautoscalers,ingresses")
    out = cluster.kubectl("get", kinds, "-n", f"tenant-{name}", "-l", f"{TENANT_LABEL}={name}",
                          "-o", "yaml").stdout
    items: list[dict[str, object]] = yaml.safe_load(out)["items"]
    return items


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
            kill_points.append((round(delay, 2), ready))
        # Kill points must really fall while provisioning is under way.
        assert any(ready < len(TENANTS) for _, ready in kill_points), kill_points

        final = OperatorProcess(kubeconfig, tmp_path / "operator-final.log", extra_env=env)
        final.start()
        try:
            for name in TENANTS:
                tenants.wait_condition(cluster, name, "Ready", "True", timeout=240)
        finally:
            final.stop()

        core, apps = client.CoreV1Api(cluster.api), client.AppsV1Api(cluster.api)
        for manifest in manifests:
            name = manifest["metadata"]["name"]
            tenant = tenants.get(cluster, name)
            assert tenant is not None
            uid = tenant["metadata"]["uid"]
            live = _live_children(cluster, name)
            keys = Counter((o["kind"], o["metadata"]["name"]) for o in live)  # type: ignore[index]
            assert set(keys) == _expected_children(name, manifest["spec"]), name
            assert max(keys.values()) == 1
            for obj in live:
                owners = obj["metadata"].get("ownerReferences")  # type: ignore[attr-defined]
                assert owners and [o["uid"] for o in owners] == [uid], obj["metadata"]
            # No pod-template churn: one ReplicaSet per Deployment, ever.
            replica_sets = apps.list_namespaced_replica_set(f"tenant-{name}").items
            owners_of_rs = Counter(rs.metadata.owner_references[0].name for rs in replica_sets)
            assert owners_of_rs and max(owners_of_rs.values()) == 1, owners_of_rs
        # Nothing labelled for these tenants lives outside their namespaces.
        stray = [
            ns.metadata.name for ns in core.list_namespace(label_selector=TENANT_LABEL).items
            if ns.metadata.labels[TENANT_LABEL] in TENANTS
            and ns.metadata.name != f"tenant-{ns.metadata.labels[TENANT_LABEL]}"
        ]
        assert stray == []
    finally:
        for name in TENANTS:
            tenants.discard(cluster, name)
        for name in TENANTS:
            eventually(lambda n=name: tenants.get(cluster, n) is None, timeout=180)
