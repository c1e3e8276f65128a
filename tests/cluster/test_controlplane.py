"""The local control plane is a real Kubernetes: controllers, scheduler, kwok, RBAC, kubectl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.cluster import FAKE_NODE_PREFIX, fake_node_manifest
from stackforge_operator.devcluster.kubeconfig import python_discovery_cache
from stackforge_operator.devcluster.processes import pid_alive, processes_mentioning
from stackforge_operator.devcluster.stages import RUNNER_LABEL
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, spec_of, status_of


def eventually(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Poll until ``check`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")


def _pod_template(labels: dict[str, str]) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox:1.36")],
            restart_policy="Never" if "job" in labels.get("app", "") else "Always",
        ),
    )


def test_deployment_reaches_ready_replicas(cluster: ClusterHandle, namespace: str) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels={"app": "web"}),
                template=_pod_template({"app": "web"}),
            ),
        ),
    )

    def ready() -> int:
        status = status_of(apps.read_namespaced_deployment_status("web", namespace))
        return (status.ready_replicas or 0) == 3

    eventually(ready)
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector="app=web")
    assert len(pods.items) == 3
    # The scheduler really placed them on kwok's fake nodes.
    assert all((spec_of(p).node_name or "").startswith("kwok-node-") for p in pods.items)
    assert all(status_of(p).phase == "Running" for p in pods.items)


def _create_job(cluster: ClusterHandle, namespace: str, name: str, labels: dict[str, str]) -> None:
    client.BatchV1Api(cluster.api).create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1JobSpec(
                completions=2,
                backoff_limit=0,
                template=_pod_template({"app": "job-" + name, **labels}),
            ),
        ),
    )


def _job_condition(cluster: ClusterHandle, namespace: str, name: str, kind: str) -> bool:
    job = client.BatchV1Api(cluster.api).read_namespaced_job_status(name, namespace)
    return any(c.type == kind and c.status == "True" for c in status_of(job).conditions or [])


def test_job_completes(cluster: ClusterHandle, namespace: str) -> None:
    _create_job(cluster, namespace, "batch", {})
    eventually(lambda: _job_condition(cluster, namespace, "batch", "Complete"))
    job = client.BatchV1Api(cluster.api).read_namespaced_job_status("batch", namespace)
    assert status_of(job).succeeded == 2


def test_runner_pods_are_left_for_the_harness(cluster: ClusterHandle, namespace: str) -> None:
    """kwok must not fake the success of a pod whose work has to really happen."""
    _create_job(cluster, namespace, "backup", {RUNNER_LABEL: "backup"})
    core = client.CoreV1Api(cluster.api)

    def running_pod() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{RUNNER_LABEL}=backup").items
        return [p for p in pods if status_of(p).phase == "Running"]

    eventually(running_pod)
    time.sleep(3)  # several kwok stage periods
    pods = core.list_namespaced_pod(namespace, label_selector=f"{RUNNER_LABEL}=backup").items
    assert pods and all(status_of(p).phase == "Running" for p in pods)
    assert not _job_condition(cluster, namespace, "backup", "Complete")


def test_rbac_is_enforced(cluster: ClusterHandle, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    token = cluster.service_account_token(namespace, "reader")
    as_reader = client.CoreV1Api(cluster.api_as(token))

    with pytest.raises(ApiException) as denied:
        as_reader.list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    assert denied.value.body is not None  # the API server's response
    assert f"system:serviceaccount:{namespace}:reader" in denied.value.body

    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"],
                                       verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                      name="configmap-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader",
                                           namespace=namespace)],
        ),
    )

    def allowed() -> bool:
        try:
            as_reader.list_namespaced_config_map(namespace)
        except ApiException as error:
            assert error.status == 403
            return False
        return True

    # The authorizer's informer sees the new binding within moments.
    eventually(allowed, timeout=15)
    # Still nothing beyond the Role: secrets stay forbidden.
    with pytest.raises(ApiException) as still_denied:
        as_reader.list_namespaced_secret(namespace)
    assert still_denied.value.status == 403


def test_namespace_deletion_completes(cluster: ClusterHandle) -> None:
    core = client.CoreV1Api(cluster.api)
    name = "t-ns-deletion"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="data"), data={"k": "v"})
    )
    client.AppsV1Api(cluster.api).create_namespaced_deployment(
        name,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=1,
                selector=client.V1LabelSelector(match_labels={"app": "web"}),
                template=_pod_template({"app": "web"}),
            ),
        ),
    )
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as error:
            return bool(error.status == 404)  # the client leaves status untyped
        return False

    eventually(gone, timeout=90)


def test_bundled_kubectl_server_side_apply_and_wait(cluster: ClusterHandle, namespace: str) -> None:
    manifest = textwrap.dedent(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: api
        spec:
          replicas: 2
          selector:
            matchLabels: {app: api}
          template:
            metadata:
              labels: {app: api}
            spec:
              containers:
              - name: api
                image: nginx:1.27
        """
    )
    applied = cluster.kubectl(
        "apply", "--server-side", "--field-manager=tests", "-n", namespace, "-f", "-",
        input=manifest,
    )
    assert "deployment.apps/api serverside-applied" in applied.stdout
    waited = cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "--timeout=60s", "deployment/api"
    )
    assert "condition met" in waited.stdout
    managers = cluster.kubectl(
        "get", "deployment", "api", "-n", namespace, "--show-managed-fields",
        "-o", "jsonpath={.metadata.managedFields[*].manager}",
    ).stdout.split()
    assert "tests" in managers


def test_operator_runs_in_process_and_answers_liveness(
    operator_in_process: tuple[object, str],
) -> None:
    import httpx

    _runner, liveness = operator_in_process

    def alive() -> dict[str, Any] | None:
        try:
            response = httpx.get(liveness, timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    probes = eventually(alive, timeout=30)
    assert "version" in probes


def test_operator_runs_as_subprocess_and_answers_liveness(operator_subprocess: Any) -> None:
    import httpx

    response = httpx.get(operator_subprocess.liveness_url, timeout=5)
    assert response.status_code == 200
    assert "version" in response.json()
    assert operator_subprocess.process.running()


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    """Nor the Python client's discovery cache of its address (a file per API server
    in the temporary directory, never removed by the client)."""
    local = LocalCluster(tmp_path / "second")
    local.start()
    pids = local.alive_pids()
    assert len(pids) == 5  # etcd, apiserver, controller-manager, scheduler, kwok
    api = config.new_client_from_config(config_file=str(local.kubeconfig))
    DynamicClient(api).resources.get(api_version="v1", kind="Pod")
    cache = python_discovery_cache(local.server)
    assert cache.is_file()
    local.stop()
    assert local.alive_pids() == []
    assert processes_mentioning(str(tmp_path / "second")) == []
    assert not any(pid_alive(pid) for pid in pids)
    assert not cache.exists()


def test_components_die_with_a_killed_launcher(tmp_path: Path) -> None:
    """Even when the launcher itself is SIGKILLed, no component outlives it."""
    run_dir = tmp_path / "orphaned"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from stackforge_operator.devcluster import LocalCluster
        cluster = LocalCluster(Path({str(run_dir)!r}))
        cluster.start()
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout is not None
        assert launcher.stdout.readline().strip() == "ready"
        assert len(processes_mentioning(str(run_dir))) >= 5
    finally:
        launcher.kill()
        launcher.wait()
    eventually(lambda: processes_mentioning(str(run_dir)) == [], timeout=15)


def test_a_crashed_kwok_is_started_again_and_keeps_managing_nodes(tmp_path: Path) -> None:
    """kwok v0.8.0 can die of a data race at start-up (supervisor.py); the
    cluster starts it again instead of failing. SIGQUIT makes a Go program
    exit 2 with its goroutines dumped, as a runtime fatal error does."""
    run_dir = tmp_path / "kwok-crash"
    local = LocalCluster(run_dir, nodes=1)
    local.start()
    try:
        kwok = local.component("kwok")
        restarter = local.kwok_restarter
        assert restarter is not None and kwok.pid is not None
        crashed_pid = kwok.pid
        os.kill(crashed_pid, signal.SIGQUIT)
        eventually(lambda: kwok.running() and kwok.pid != crashed_pid, timeout=15)
        assert [crash.exit_status for crash in restarter.crashes] == [2]
        # Only a running kwok makes a new fake node Ready.
        local.kubectl("apply", "-f", "-", input=json.dumps(fake_node_manifest(1)))
        eventually(lambda: local.kubectl(
            "get", "node", f"{FAKE_NODE_PREFIX}1", "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}').stdout == "True")
    finally:
        local.stop()
    assert processes_mentioning(str(run_dir)) == []


def test_statefulset_volume_claims_are_bound(cluster: ClusterHandle, namespace: str) -> None:
    """kwok's volume stages provision claims of the default StorageClass."""
    manifest = textwrap.dedent(
        f"""
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {{name: db, namespace: {namespace}}}
        spec:
          serviceName: db
          replicas: 2
          selector: {{matchLabels: {{app: db}}}}
          template:
            metadata: {{labels: {{app: db}}}}
            spec:
              containers: [{{name: db, image: "postgres:16"}}]
          volumeClaimTemplates:
          - metadata: {{name: data}}
            spec:
              accessModes: [ReadWriteOnce]
              resources: {{requests: {{storage: 1Gi}}}}
        """
    )
    cluster.kubectl("apply", "--server-side", "-f", "-", input=manifest)
    apps = client.AppsV1Api(cluster.api)
    eventually(lambda: status_of(apps.read_namespaced_stateful_set_status("db", namespace))
               .ready_replicas == 2)
    claims = client.CoreV1Api(cluster.api).list_namespaced_persistent_volume_claim(namespace)
    assert sorted(name_of(c) for c in claims.items) == ["data-db-0", "data-db-1"]
    assert all(status_of(c).phase == "Bound" for c in claims.items)
    assert all(spec_of(c).storage_class_name == "kwok-volume" for c in claims.items)
