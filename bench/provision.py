"""Provision 50 tenants through the operator vs `kubectl apply --server-side` of the
same rendered children, on the same local control plane, in the same run.

Prints a table: time until every tenant's workloads are ready for each way,
their ratio (target: operator <= 1.3 x raw apply), and the operator's peak RSS.

    .venv/bin/python bench/provision.py [--tenants 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from stackforge_operator.builders import credentials, stack
from stackforge_operator.builders.common import TENANT_LABEL
from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.localrun import install_crds
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.devcluster.realrun import discard_run_dir
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import StackForgeTenantSpec

SPEC: dict[str, Any] = {
    "tier": "Starter",
    "components": {"apps": [{"name": "api", "image": "registry.example.com/shop/api:1.0.0",
                             "port": 8080}]},
}


def rendered_children(name: str) -> list[dict[str, Any]]:
    """What the operator would create for a tenant, rendered by the same builders."""
    t = resolve(name, StackForgeTenantSpec.model_validate(SPEC), namespace=f"tenant-{name}")
    secrets = credentials.build(t, existing={}, existing_rotation={}, rotation_request=None)
    return stack.desired_children(t, secrets=secrets, tls=None, rotation=None)


def workloads_ready(apps: client.AppsV1Api, prefix: str, count: int) -> bool:
    """Every Deployment and StatefulSet of the tenants named ``prefix*`` is fully ready."""
    selector = TENANT_LABEL
    seen: set[str] = set()
    for items in (apps.list_deployment_for_all_namespaces(label_selector=selector).items,
                  apps.list_stateful_set_for_all_namespaces(label_selector=selector).items):
        for workload in items:
            # Listed by the label's selector: each has metadata and that label.
            assert workload.metadata is not None and workload.metadata.labels is not None
            tenant = workload.metadata.labels[TENANT_LABEL]
            if not tenant.startswith(prefix):
                continue
            seen.add(tenant)
            wanted = (workload.spec.replicas or 0) if workload.spec is not None else 0
            ready = workload.status.ready_replicas if workload.status is not None else None
            if (ready or 0) < wanted:
                return False
    return len(seen) == count


def tenants_ready(objects: client.CustomObjectsApi, prefix: str, count: int) -> bool:
    found = objects.list_cluster_custom_object("stackforge.io", "v1alpha1", "stackforgetenants")
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    items = found["items"]
    ready = 0
    for item in items:
        if not item["metadata"]["name"].startswith(prefix):
            continue
        for cond in (item.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Ready" and cond["status"] == "True":
                ready += 1
    return ready == count


def wait(check: Any, timeout: float = 900.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("not ready in time")
        time.sleep(0.25)
    return time.monotonic() - started


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=50)
    args = parser.parse_args()
    n = args.tenants
    run_dir = Path(tempfile.mkdtemp(prefix="stackforge-bench-"))
    cluster = LocalCluster(run_dir / "cluster", log=lambda m: print(f"  {m}", file=sys.stderr))
    cluster.start()
    try:
        install_crds(cluster)
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        apps, objects = client.AppsV1Api(api), client.CustomObjectsApi(api)

        # Raw: the same children, applied by kubectl (namespaces first).
        raw = [rendered_children(f"raw-{i:02d}") for i in range(n)]
        namespaces = [c[0] for c in raw]
        rest = [m for c in raw for m in c[1:]]
        (run_dir / "namespaces.yaml").write_text(yaml.safe_dump_all(namespaces))
        (run_dir / "children.yaml").write_text(yaml.safe_dump_all(rest))
        print(f"raw apply: {n} namespaces and {len(rest)} objects", file=sys.stderr)
        started = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-f", str(run_dir / "namespaces.yaml"),
                        timeout=600)
        cluster.kubectl("apply", "--server-side", "-f", str(run_dir / "children.yaml"),
                        timeout=600)
        applied = time.monotonic() - started
        raw_seconds = applied + wait(lambda: workloads_ready(apps, "raw-", n))

        # Operator: n tenants applied at once, each with its namespace (made first, as the
        # raw side's are: kubectl applies a List in order).
        operator = OperatorProcess(cluster.kubeconfig, run_dir / "operator.log")
        operator.start()
        assert operator.process.pid is not None
        manifests = [
            *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"tenant-op-{i:02d}"}}
              for i in range(n)),
            *({"apiVersion": "stackforge.io/v1alpha1", "kind": "StackForgeTenant",
               "metadata": {"name": f"op-{i:02d}", "namespace": f"tenant-op-{i:02d}"},
               "spec": SPEC} for i in range(n)),
        ]
        started = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": manifests}), timeout=600)
        operator_seconds = (time.monotonic() - started) + wait(
            lambda: tenants_ready(objects, "op-", n))
        rss = peak_rss_mib(operator.process.pid)
        operator.stop()

        ratio = operator_seconds / raw_seconds
        print()
        print(f"| what ({n} tenants, {len(rest) // n + 1} objects each) | time to all Ready |")
        print("|---|---|")
        print(f"| kubectl apply --server-side of the rendered children | {raw_seconds:.1f} s |")
        print(f"| operator (namespaces and tenants applied at once) | {operator_seconds:.1f} s |")
        print(f"| ratio operator / raw (target <= 1.3) | {ratio:.2f} |")
        print(f"| operator peak RSS | {rss:.0f} MiB |")
    finally:
        cluster.stop()
    discard_run_dir(run_dir)  # only after a run that finished
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
