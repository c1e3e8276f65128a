"""`stackforge-operator dev` on one real node: the example tenant on running pods,
an on-demand backup and a drill, each step a progress line with its time."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from stackforge_operator.devcluster import dev_overlay
from stackforge_operator.devcluster.binary import ensure_binary
from stackforge_operator.devcluster.cluster import ControlPlaneError, LocalCluster
from stackforge_operator.devcluster.localrun import (
    EXAMPLES_DIR,
    install_crds,
    install_kubelet_reader,
    interrupt_on_signals,
    watch,
)
from stackforge_operator.devcluster.node import metrics_server
from stackforge_operator.devcluster.node.realnode import ImageArchive, RealNodeError
from stackforge_operator.devcluster.node.runtime import LOCAL_REGISTRY
from stackforge_operator.devcluster.node.tools import ensure_node_tools
from stackforge_operator.devcluster.operator_process import OperatorProcess

STEPS = 8
DEV_BUCKET = "stackforge-backups"
# The example drill's checks look for these tables.
SEED_SQL = """
CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, customer_id int REFERENCES customers,
                                   total numeric(10, 2));
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 100) g
  ON CONFLICT DO NOTHING;
INSERT INTO orders SELECT g, 1 + g % 100, g * 2.5 FROM generate_series(1, 300) g
  ON CONFLICT DO NOTHING;
"""


class _Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step_started = self.started

    def step(self, number: int, text: str) -> None:
        self.step_started = time.monotonic()
        print(f"[{number}/{STEPS}] {text}", flush=True)

    def info(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def done(self, text: str) -> None:
        now = time.monotonic()
        print(f"      {text} ({now - self.step_started:.0f}s; {now - self.started:.0f}s in all)",
              flush=True)


def _examples() -> list[dict[str, Any]]:
    return [doc for path in sorted(EXAMPLES_DIR.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def _apply(cluster: LocalCluster, documents: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "--server-side", "--field-manager=stackforge-dev", "-f", "-",
                    input=yaml.safe_dump_all(documents))


def _get(cluster: LocalCluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    result = cluster.kubectl("get", kind, "-n", namespace, name, "-o", "json", check=False)
    found: dict[str, Any] = json.loads(result.stdout) if result.returncode == 0 else {}
    return found


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == type_:
            return dict(found)
    return {}


def _until(what: str, check: Callable[[], str | None], progress: Callable[[], str],
           clock: _Clock, timeout: float) -> str:
    """Poll ``check`` until it returns a result; print ``progress`` whenever it changes."""
    deadline = time.monotonic() + timeout
    said = ""
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        now = progress()
        if now and now != said:
            clock.info(now)
            said = now
        time.sleep(2)
    raise ControlPlaneError(f"{what} did not happen within {timeout:.0f}s; last: {said}")


def start_project_operator(cluster: LocalCluster) -> OperatorProcess:
    """The operator on the host, running its components from the project's images (as
    imported into the real node's containerd)."""
    from stackforge_operator.devcluster import images

    catalog = images.write_project_catalog(cluster.run_dir / "image-catalog.yaml")
    operator = OperatorProcess(
        cluster.kubeconfig, cluster.run_dir / "operator.log",
        extra_env={"STACKFORGE_IMAGE_REGISTRY": LOCAL_REGISTRY,
                   "STACKFORGE_IMAGE_CATALOG": str(catalog)})
    operator.start()
    return operator


def run_real_node(run_dir: Path | None, *, once: bool) -> int:
    clock = _Clock()
    interrupt_on_signals()
    clock.step(1, "building what is missing: control plane, node programs, images "
                  "(cold: about 40 minutes on 2 cores; warm: seconds)")
    binary = ensure_binary()
    ensure_node_tools()
    from stackforge_operator.devcluster import images

    built = images.ensure_images()
    for image in built:
        clock.info(f"{image.reference}: {'built' if image.built else 'cached'}")
    clock.done("everything built")

    clock.step(2, "starting the control plane and one real node "
                  "(kubelet, containerd, kube-proxy, CoreDNS, NetworkPolicy enforcer)")
    cluster = LocalCluster(run_dir, binary=binary, nodes=0, real_node=True, log=clock.info,
                           images=[ImageArchive(i.reference, i.archive_path, i.inputs)
                                   for i in built])
    operator: OperatorProcess | None = None
    s3: Any = None
    try:
        cluster.start(timeout=180)
        clock.done(f"node Ready; export KUBECONFIG={cluster.kubeconfig}")
        clock.step(3, "CRDs and the kubelet reader, then the operator (stackforge-operator run)")
        install_crds(cluster)
        install_kubelet_reader(cluster)
        operator = start_project_operator(cluster)
        clock.done(f"operator running; log {cluster.run_dir / 'operator.log'}")

        clock.step(4, "an S3 server for backups, over TLS on the node address; "
                      "metrics-server (measured use, kubectl top), not waited for")
        s3 = _start_s3(cluster)
        metrics_server.install(cluster, wait=False)
        clock.done(f"{s3.endpoint}, bucket {DEV_BUCKET}")

        clock.step(5, f"applying {EXAMPLES_DIR}, adjusted to what runs on this node")
        documents, notes = dev_overlay.adjust(
            _examples(), dev_overlay.LocalS3(s3.endpoint, DEV_BUCKET))
        for note in notes:
            clock.info(note)
        namespaces = [d for d in documents if d["kind"] == "Namespace"]
        tenant = next(d for d in documents if d["kind"] == "StackForgeTenant")
        policy = next(d for d in documents if d["kind"] == "BackupPolicy")
        drill = next(d for d in documents if d["kind"] == "DRDrill")
        namespace = tenant["metadata"]["namespace"]
        _apply(cluster, namespaces)
        _apply(cluster, _secrets(policy, namespace, s3))
        _apply(cluster, [tenant])
        name = tenant["metadata"]["name"]
        _until(
            "tenant Ready",
            lambda: "Ready" if _condition(_get(cluster, "sft", namespace, name),
                                          "Ready").get("status") == "True" else None,
            lambda: _tenant_progress(cluster, namespace, name), clock, timeout=600)
        clock.done(f"tenant {namespace}/{name} Ready on running pods")
        print(cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout.rstrip(),
              flush=True)

        clock.step(6, "seeding the example database (customers, orders) as its owner")
        _seed(cluster, namespace, tenant)
        clock.done("seeded")

        clock.step(7, "an on-demand backup (a Job in the operator image, on the node)")
        policy_name = policy["metadata"]["name"]
        _apply(cluster, [policy])
        cluster.kubectl("annotate", "--overwrite", "-n", namespace, f"sfbp/{policy_name}",
                        "stackforge.io/backup-now=dev")
        result = _until(
            "backup finished",
            lambda: ((_get(cluster, "sfbp", namespace, policy_name).get("status") or {})
                     .get("lastRun") or {}).get("result") if _backup_done(
                         cluster, namespace, policy_name) else None,
            lambda: _reason(_get(cluster, "sfbp", namespace, policy_name)), clock, timeout=600)
        if result != "Succeeded":
            raise ControlPlaneError(f"the backup ended {result}: "
                                    f"{_reason(_get(cluster, 'sfbp', namespace, policy_name))}")
        clock.done("backup Succeeded")

        clock.step(8, "a restore drill (restore Job and scratch PostgreSQL in a sandbox)")
        drill_name = drill["metadata"]["name"]
        _apply(cluster, [drill])
        verdict = _until(
            "drill finished",
            lambda: _drill_verdict(cluster, namespace, drill_name),
            lambda: _reason(_get(cluster, "sfdr", namespace, drill_name)), clock, timeout=600)
        clock.done(f"drill {verdict}")
        print(cluster.kubectl("get", "stackforge", "-A").stdout.rstrip(), flush=True)
        clock.info(f"all of it in {time.monotonic() - clock.started:.0f}s")
        clock.info(f"kubectl is bundled: {binary} kubectl --kubeconfig {cluster.kubeconfig}")
        if verdict != "Passed":
            return 1
        if once:
            return 0
        return watch(cluster, operator)
    except KeyboardInterrupt:
        return 0
    except (ControlPlaneError, RealNodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        clock.info("stopping: operator, S3, node (the host is put back), control plane")
        stop_everything(cluster, operator, s3)


def stop_everything(cluster: LocalCluster, operator: OperatorProcess | None, s3: Any) -> None:
    """Operator, S3 server (either may be None), then the cluster, whatever happens.

    A second Ctrl-C (or the TERM a wrapper forwards) must not cut this short:
    a half-stopped node leaves the host changed. Differences from the host as
    it was are printed.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if operator is not None:
        operator.stop()
    if s3 is not None:
        s3.stop()
    cluster.stop()
    for difference in cluster.host_differences:
        print(f"warning: host not restored: {difference}", file=sys.stderr)


def discard_run_dir(run_dir: Path) -> None:
    """Remove a finished run's directory (a cluster's, or a bench's that holds
    one): its tenant volumes, restores, etcd data and logs, gigabytes per
    benchmark run, which filled a machine's disk after a few (the kubelet then
    evicted images under disk pressure). Called only after a run that
    succeeded: a failed run's directory is kept for its logs."""
    shutil.rmtree(run_dir, ignore_errors=True)


def _start_s3(cluster: LocalCluster) -> Any:
    from stackforge_operator.devcluster.s3server import S3Server

    assert cluster.node is not None
    server = S3Server(host=cluster.node.network.node_ip, tls=True)
    server.start()
    server.create_bucket(DEV_BUCKET)
    return server


def _secrets(policy: dict[str, Any], namespace: str, s3: Any) -> list[dict[str, Any]]:
    credentials = policy["spec"]["storage"]["credentialsSecretRef"]["name"]
    return [
        dev_overlay.dev_secret(credentials, namespace, s3.credentials.env()),
        dev_overlay.dev_secret(dev_overlay.S3_CA_SECRET, namespace,
                               {"ca.crt": s3.ca_bundle.read_text()}),
    ]


def _tenant_progress(cluster: LocalCluster, namespace: str, name: str) -> str:
    tenant = _get(cluster, "sft", namespace, name)
    waiting = [f"{c['type']}: {c.get('reason', '')}"
               for c in (tenant.get("status") or {}).get("conditions") or []
               if c.get("type", "").endswith("Ready") and c.get("status") != "True"]
    return "waiting for " + ", ".join(waiting) if waiting else ""


def _reason(obj: dict[str, Any]) -> str:
    ready = _condition(obj, "Ready")
    return f"{ready.get('reason', '')}: {ready.get('message', '')}".strip(": ")


def _backup_done(cluster: LocalCluster, namespace: str, name: str) -> bool:
    last = ((_get(cluster, "sfbp", namespace, name).get("status") or {}).get("lastRun") or {})
    return last.get("result") in ("Succeeded", "Failed")


def _drill_verdict(cluster: LocalCluster, namespace: str, name: str) -> str | None:
    status = _get(cluster, "sfdr", namespace, name).get("status") or {}
    if status.get("activeRun") or not status.get("lastResult"):
        return None
    return str(status["lastResult"].get("verdict"))


def _seed(cluster: LocalCluster, namespace: str, tenant: dict[str, Any]) -> None:
    database = tenant["spec"]["components"]["postgres"].get("database", "app")
    psql = ["exec", "-i", "-n", namespace, "postgres-0", "-c", "postgres", "--", "psql",
            "-U", "postgres", "-h", "/var/run/postgresql", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-tA"]
    owner = cluster.kubectl(
        *psql, input="SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
                     "WHERE datname = current_database()").stdout.strip()
    # Owned by the application role, as the application would make them, so the
    # backup (which connects as that role) dumps them.
    cluster.kubectl(*psql, input=f'SET ROLE "{owner}";\n{SEED_SQL}')
