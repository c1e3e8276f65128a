"""Plain pods on the real node for tests: a PostgreSQL server or client from the
project's image, a Service, waiting, exec and reachability."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client

from stackforge_operator.builders.common import (
    APP_COMPONENT,
    APP_LABEL,
    COMPONENT_LABEL,
    OPERATOR_NAMESPACE,
    TENANT_LABEL,
)
from stackforge_operator.builders.network import SCRAPER_NAMESPACE_LABEL
from stackforge_operator.devcluster.node.runtime import K8S_NAMESPACE
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, status_of, uid_of

# What the test cluster's catalog (registry prefix "localhost") names.
POSTGRES_IMAGE = "localhost/stackforge/postgres:15"
OPERATOR_IMAGE = "localhost/stackforge/stackforge-operator:0.1.0"
# flow_probe.py, mounted from a ConfigMap into pods of the operator image.
PROBE_CONFIG_MAP = "flow-probe"
PROBE = ("python3", "/probe/flow_probe.py")


def app_labels(tenant: str, app: str = "api") -> dict[str, str]:
    """The labels the tenant's policies know its app ``app`` by (builders/network.app_peer):
    a pod carrying them stands in for that app."""
    return {APP_LABEL: app, COMPONENT_LABEL: APP_COMPONENT, TENANT_LABEL: tenant}


def probe_config_map(namespace: str) -> dict[str, Any]:
    source = Path(__file__).with_name("flow_probe.py").read_text(encoding="utf-8")
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": PROBE_CONFIG_MAP, "namespace": namespace},
            "data": {"flow_probe.py": source}}


def probe_pod(name: str, namespace: str, labels: dict[str, str],
              listens: Sequence[str] = ()) -> dict[str, Any]:
    """A pod of the operator image that serves ``listens`` with flow_probe.py (or
    only waits), for ``kubectl exec`` of the probe's other verbs; it needs
    :func:`probe_config_map` in its namespace."""
    command = [*PROBE, "listen", *listens] if listens else ["sleep", "infinity"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": OPERATOR_IMAGE, "imagePullPolicy": "Never",
                "command": command,
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "5m", "memory": "24Mi"},
                              "limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "probe", "mountPath": "/probe"}],
            }],
            "volumes": [{"name": "probe", "configMap": {"name": PROBE_CONFIG_MAP}}],
        },
    }


def apply(cluster: ClusterHandle, *documents: dict[str, Any]) -> None:
    # JSON: kubectl reads YAML 1.1, where an unquoted y or n is a boolean.
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": list(documents)}))


@contextlib.contextmanager
def operator_stand_in(cluster: ClusterHandle, name: str) -> Iterator[str]:
    """A probe pod in the operator's namespace, for the block; yields its name.

    Every tenant policy admits the operator's namespace, isolated or not
    (builders/network.operator_flows). So it is the control beside a refusal: where
    it reaches a listener and a tenant's pod does not, the refusal is the policy's,
    not a listener that is not there (yet), a name that does not resolve or a
    Service without endpoints."""
    apply(cluster, probe_config_map(OPERATOR_NAMESPACE),
          probe_pod(name, OPERATOR_NAMESPACE, {"role": "control"}))
    try:
        wait_ready(cluster, OPERATOR_NAMESPACE, name)
        yield name
    finally:
        for kind, delete in (("pod", name), ("configmap", PROBE_CONFIG_MAP)):
            cluster.kubectl("delete", kind, delete, "-n", OPERATOR_NAMESPACE, "--wait=false",
                            "--ignore-not-found", check=False)


def refused_but_reached_by(cluster: ClusterHandle, namespace: str, pod: str, target: str,
                           control: str) -> bool:
    """Whether the probe pod ``pod`` is refused ``target`` (IP:PORT) while the
    operator's stand-in ``control`` reaches it (see operator_stand_in)."""
    return (probe_reaches(cluster, OPERATOR_NAMESPACE, control, target)
            and not probe_reaches(cluster, namespace, pod, target))


def ready_uids(cluster: ClusterHandle, namespace: str, selector: str) -> set[str]:
    """The uids of the Ready pods of ``namespace`` that ``selector`` (labels) selects."""
    return {uid_of(p) for p in client.CoreV1Api(cluster.api).list_namespaced_pod(
        namespace, label_selector=selector).items if is_ready(p)}


def postgres_pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """Admitted anywhere: Pod Security "restricted" and a tenant's ResourceQuota."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "postgres", "image": POSTGRES_IMAGE, "imagePullPolicy": "Never",
                "args": ["postgres"],
                "env": [{"name": "POSTGRES_PASSWORD", "value": "real-node-test"},
                        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                "ports": [{"containerPort": 5432, "name": "postgres"}],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"exec": {"command": ["pg_isready", "--host=127.0.0.1"]},
                                   "periodSeconds": 1},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                 {"name": "run", "mountPath": "/var/run/postgresql"}],
            }],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "run", "emptyDir": {}}],
        },
    }


def service(name: str, namespace: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "ports": [{"port": 5432, "targetPort": 5432}]}}


def is_ready(pod: Any) -> bool:
    """A pod (kubernetes client object) whose Ready condition is True."""
    return any(c.type == "Ready" and c.status == "True"
               for c in (pod.status.conditions or []))


def wait_ready(cluster: ClusterHandle, namespace: str, pod: str, timeout: int = 90) -> None:
    result = cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"pod/{pod}",
                             f"--timeout={timeout}s", check=False, timeout=timeout + 10)
    if result.returncode != 0:
        described = cluster.kubectl("describe", "pod", "-n", namespace, pod, check=False).stdout
        raise AssertionError(f"pod {namespace}/{pod} not Ready:\n{described[-3000:]}")


def replace_pod(cluster: ClusterHandle, namespace: str, pod: str, timeout: float = 120) -> None:
    """Delete a pod of a StatefulSet and wait until its replacement (same name, new
    uid) is Ready."""
    core = client.CoreV1Api(cluster.api)
    first = uid_of(core.read_namespaced_pod(pod, namespace))
    cluster.kubectl("delete", "pod", "-n", namespace, pod, "--wait=true")
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = core.read_namespaced_pod(pod, namespace)
        except client.ApiException:
            current = None  # between the old pod and its replacement
        if current is not None and uid_of(current) != first and is_ready(current):
            return
        assert time.monotonic() < deadline, f"{namespace}/{pod} not replaced in {timeout}s"
        time.sleep(0.5)


def exec_in(cluster: ClusterHandle, namespace: str, pod: str, *command: str,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("exec", "-n", namespace, pod, "--", *command, check=check)


def _pg_isready(cluster: ClusterHandle, namespace: str, pod: str,
                host: str) -> subprocess.CompletedProcess[str]:
    return exec_in(cluster, namespace, pod, "pg_isready", "-h", host, "-t", "3", check=False)


def reachable(cluster: ClusterHandle, namespace: str, pod: str, host: str) -> bool:
    return _pg_isready(cluster, namespace, pod, host).returncode == 0


def wait_routed(cluster: ClusterHandle, namespace: str, pod: str, host: str,
                timeout: float = 30) -> str:
    """Wait until ``pod`` reaches PostgreSQL through the Service ``host``; its answer.

    A backend's Ready condition comes before the Service routes to it: the
    EndpointSlice controller, then kube-proxy's next sync, must see it first.
    Clients of a new Service retry; so does this.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = _pg_isready(cluster, namespace, pod, host)
        if result.returncode == 0:
            return result.stdout
        assert time.monotonic() < deadline, (
            f"{host} did not route from {namespace}/{pod} within {timeout}s: "
            f"pg_isready exited {result.returncode}: {result.stdout}{result.stderr}")
        time.sleep(1)


def containers_of(cluster: ClusterHandle, namespace: str) -> dict[str, tuple[str, ...]]:
    """Per pod of ``namespace``: its uid, then each container's id and restart count
    (equal before and after a fault: the same processes ran on)."""
    found = {}
    for pod in client.CoreV1Api(cluster.api).list_namespaced_pod(namespace).items:
        statuses = sorted(status_of(pod).container_statuses or [], key=lambda s: s.name)
        found[name_of(pod)] = (uid_of(pod), *(
            f"{s.name}={s.container_id}#{s.restart_count}" for s in statuses))
    return found


def image_containerd_runs(cluster: ClusterHandle, container_id: str) -> str:
    """The image of a running container as the node's containerd lists it (through
    its own API, not the kubelet's report)."""
    local = cluster.local
    assert local is not None and local.node is not None and local.node.tools_dir is not None
    listing = subprocess.run(
        [str(local.node.tools_dir / "ctr"), f"--address={local.node.runtime_paths.socket}",
         f"--namespace={K8S_NAMESPACE}", "containers", "list"],
        capture_output=True, text=True, check=True).stdout
    bare_id = container_id.split("://", 1)[1]
    row = next(r for r in listing.splitlines() if r.startswith(bare_id))
    return row.split()[1]


def tag_image(cluster: ClusterHandle, source: str, target: str) -> None:
    """Give an image the node already has a second name, as a pushed new tag would."""
    local = cluster.local
    assert local is not None and local.node is not None and local.node.tools_dir is not None
    subprocess.run(
        [str(local.node.tools_dir / "ctr"), f"--address={local.node.runtime_paths.socket}",
         f"--namespace={K8S_NAMESPACE}", "images", "tag", "--force", source, target],
        capture_output=True, text=True, check=True)


def scrape_from_a_scraper_and_an_outsider(cluster: ClusterHandle, namespace: str,
                                          url: str) -> tuple[str, int]:
    """GET ``url`` from a pod in a namespace labelled as Prometheus's and from one in
    a namespace without the label (both made for the call, named after
    ``namespace``, deleted after): the scraper's body, and the outsider's exit
    status (1: refused or timed out; what the metrics flow must give it)."""
    scraper_ns, other_ns = f"{namespace}-scr", f"{namespace}-oth"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=scraper_ns, labels={SCRAPER_NAMESPACE_LABEL: "true"})))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other_ns)))
    try:
        for ns in (scraper_ns, other_ns):
            apply(cluster, probe_config_map(ns), probe_pod("scraper", ns, {"role": "scraper"}))
        for ns in (scraper_ns, other_ns):
            wait_ready(cluster, ns, "scraper")
        scraped = exec_in(cluster, scraper_ns, "scraper", *PROBE, "get", url).stdout
        refused = exec_in(cluster, other_ns, "scraper", *PROBE, "get", url, check=False)
        return scraped, refused.returncode
    finally:
        for ns in (scraper_ns, other_ns):
            core.delete_namespace(ns, propagation_policy="Background")


def held_connection_outcome(cluster: ClusterHandle, namespace: str, pod: str, target: str,
                            action: Callable[[], None], seconds: int = 150) -> str:
    """Open a TCP connection from ``pod`` (a probe pod) to ``target`` and hold it,
    run ``action`` meanwhile, and return what became of the connection: "closed"
    when the server side closed it within ``seconds``, else the probe's output."""
    held = subprocess.Popen(
        [*cluster.kubectl_argv, f"--kubeconfig={cluster.kubeconfig}", "exec", "-n",
         namespace, pod, "--", *PROBE, "hold", target, str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert held.stdout is not None
        first = held.stdout.readline().strip()
        assert first == "connected", first
        action()
        output, _ = held.communicate(timeout=seconds + 20)
    finally:
        if held.poll() is None:
            held.kill()
            held.wait()
    return output.strip() if held.returncode == 0 else f"exit {held.returncode}: {output}"


def probe_reaches(cluster: ClusterHandle, namespace: str, pod: str, target: str) -> bool:
    """Whether the probe pod ``pod`` completes a TCP handshake with ``target`` (IP:PORT)."""
    answer = exec_in(cluster, namespace, pod, *PROBE, "connect", target)
    reached: bool = json.loads(answer.stdout)[target]
    return reached
