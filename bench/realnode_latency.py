"""One tenant on the real node: the operator's time to Ready against `kubectl apply
--server-side` of the same rendered children on the same node, in the same run
(alternating, --rounds each). Goal: the operator within 1.1 x.

The tenant is PostgreSQL only (tests/realnode/stack.py: the one component with an
image built here), its pods from the project's images. The operator's time runs
from `kubectl apply` of the tenant until its Ready condition; the baseline's from
`kubectl apply` of the children until every Deployment and StatefulSet is ready.
Both namespaces are made beforehand and deleted afterwards (not timed).

    .venv/bin/python bench/realnode_latency.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_facts  # noqa: E402
from tests.realnode.stack import postgres_only  # noqa: E402

from stackforge_operator import image_catalog  # noqa: E402
from stackforge_operator.builders import credentials, postgres, stack  # noqa: E402
from stackforge_operator.devcluster import images  # noqa: E402
from stackforge_operator.devcluster.binary import ensure_binary  # noqa: E402
from stackforge_operator.devcluster.cluster import LocalCluster  # noqa: E402
from stackforge_operator.devcluster.localrun import install_crds, interrupt_on_signals  # noqa: E402
from stackforge_operator.devcluster.node.realnode import ImageArchive  # noqa: E402
from stackforge_operator.devcluster.node.runtime import LOCAL_REGISTRY  # noqa: E402
from stackforge_operator.devcluster.node.tools import ensure_node_tools  # noqa: E402
from stackforge_operator.devcluster.operator_process import OperatorProcess  # noqa: E402
from stackforge_operator.devcluster.realrun import (  # noqa: E402
    discard_run_dir,
    start_project_operator,
    stop_everything,
)
from stackforge_operator.models.effective import resolve  # noqa: E402
from stackforge_operator.models.tenant import StackForgeTenantSpec  # noqa: E402

GOAL = 1.1


def rendered(name: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator applies for this tenant, by the same builders (its Namespace
    first)."""
    namespace = f"tenant-{name}"
    t = resolve(name, StackForgeTenantSpec.model_validate(spec), namespace=namespace)
    secrets = credentials.build(t, existing={}, existing_rotation={}, rotation_request=None)
    # The tenant has no admin accounts: the operator's roles Secret holds none.
    secrets.append(postgres.admin_roles_secret(t, {}))
    return stack.desired_children(t, secrets=secrets, tls=None, rotation=None)


def _until(check: Callable[[], bool], timeout: float = 300) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError("not ready in time")
        time.sleep(0.05)
    return time.monotonic() - started


class Bench:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def apply(self, *documents: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": list(documents)}))

    def get(self, *args: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.cluster.kubectl(*args, "-o", "json").stdout)
        return found

    def namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def operator_round(self, number: int) -> float:
        body = postgres_only(f"lat-op-{number}")
        namespace = body["metadata"]["namespace"]
        self.namespace(namespace)
        started = time.monotonic()
        self.apply(body)

        def ready() -> bool:
            tenant = self.get("get", "stackforgetenant", body["metadata"]["name"],
                              "-n", namespace)
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (tenant.get("status") or {}).get("conditions") or [])

        _until(ready)
        seconds = time.monotonic() - started
        self.cluster.kubectl("delete", "stackforgetenant", body["metadata"]["name"],
                             "-n", namespace, "--wait=true", timeout=300)
        self.cluster.kubectl("delete", "namespace", namespace, "--wait=true", timeout=300)
        return seconds

    def raw_round(self, number: int) -> float:
        name = f"lat-raw-{number}"
        children = rendered(name, postgres_only(name)["spec"])
        namespace = children[0]["metadata"]["name"]
        self.apply(children[0])
        started = time.monotonic()
        self.apply(*children[1:])

        def ready() -> bool:
            workloads = self.get("get", "deployments,statefulsets", "-n", namespace)["items"]
            return bool(workloads) and all(
                (w.get("status") or {}).get("readyReplicas", 0) >= w["spec"].get("replicas", 1)
                for w in workloads)

        _until(ready)
        seconds = time.monotonic() - started
        self.cluster.kubectl("delete", "namespace", namespace, "--wait=true", timeout=300)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # A TERM (or an INT to a background run) must still put the host back.
    interrupt_on_signals()
    print(machine_facts(), flush=True)
    binary = ensure_binary()
    ensure_node_tools()
    built = images.ensure_images()
    # The baseline's children name the images the operator's do.
    image_catalog.install(image_catalog.from_settings(
        {"STACKFORGE_IMAGE_REGISTRY": LOCAL_REGISTRY}, images.PROJECT_CATALOG))
    cluster = LocalCluster(None, binary=binary, nodes=0, real_node=True,
                           images=[ImageArchive(i.reference, i.archive_path, i.inputs)
                                   for i in built])
    operator: OperatorProcess | None = None
    times: dict[str, list[float]] = {"operator": [], "kubectl apply": []}
    try:
        cluster.start(timeout=180)
        install_crds(cluster)
        operator = start_project_operator(cluster)
        bench = Bench(cluster)
        # One unmeasured round each: the first pod of an image pays for its unpacking.
        bench.operator_round(0)
        bench.raw_round(0)
        for number in range(1, args.rounds + 1):
            times["operator"].append(bench.operator_round(number))
            times["kubectl apply"].append(bench.raw_round(number))
            print(f"round {number}: operator {times['operator'][-1]:.2f} s, "
                  f"kubectl apply {times['kubectl apply'][-1]:.2f} s", flush=True)
    finally:
        stop_everything(cluster, operator, None)
    discard_run_dir(cluster.run_dir)  # only after a run that finished

    print(f"\n| {'way':<14} | {'seconds to Ready (each)':<28} | {'median':>8} |")
    print(f"|{'-' * 16}|{'-' * 30}|{'-' * 10}|")
    medians = {}
    for way, seconds in times.items():
        medians[way] = statistics.median(seconds)
        each = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"| {way:<14} | {each:<28} | {medians[way]:>6.2f} s |")
    ratio = medians["operator"] / medians["kubectl apply"]
    print(f"\noperator / kubectl apply: {ratio:.2f} (goal: <= {GOAL})")


if __name__ == "__main__":
    main()
