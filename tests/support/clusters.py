"""Cluster providers for the tests: the local control plane, kind, or a kubeconfig."""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.cluster import kubectl_cache_dir
from tests.support import durations

PROVIDERS = ("local", "kind", "kubeconfig")


def _children_cpu() -> float:
    """CPU-seconds used by this process's ended children so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


@dataclass
class ClusterHandle:
    """What a test needs of a cluster, whichever provider made it."""

    provider: str
    kubeconfig: Path
    kubectl_argv: list[str]
    local: LocalCluster | None = None
    _api: client.ApiClient | None = field(default=None, repr=False)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        cache = kubectl_cache_dir(self.kubeconfig)
        argv = [*self.kubectl_argv, f"--kubeconfig={kubeconfig or self.kubeconfig}",
                f"--cache-dir={cache}", *args]
        started, children_before = time.monotonic(), _children_cpu()
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        # Other children of this process may end meanwhile (a held `kubectl exec`):
        # the CPU figure is an estimate.
        durations.note_kubectl(time.monotonic() - started, _children_cpu() - children_before)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    @property
    def api(self) -> client.ApiClient:
        """One ApiClient for the whole session, authenticated as cluster admin."""
        if self._api is None:
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    def service_account_token(self, namespace: str, name: str, seconds: int = 600) -> str:
        """A token for ServiceAccount ``namespace/name`` (TokenRequest; the API server may
        shorten ``seconds`` to its own maximum)."""
        issued = client.CoreV1Api(self.api).create_namespaced_service_account_token(
            name, namespace, client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)))
        assert issued.status is not None
        return str(issued.status.token)

    def api_as(self, token: str) -> client.ApiClient:
        """An ApiClient for the same server that authenticates with a bearer token."""
        admin = self.api.configuration
        configuration = client.Configuration()
        configuration.host = admin.host
        configuration.ssl_ca_cert = admin.ssl_ca_cert
        configuration.verify_ssl = admin.verify_ssl
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)


def bundled_or_system_kubectl(local_binary: Path | None) -> list[str]:
    if local_binary is not None and local_binary.exists():
        return [str(local_binary), "kubectl"]
    system = shutil.which("kubectl")
    if system is None:
        raise RuntimeError("no kubectl: build the control plane or install kubectl")
    return [system]


def local_handle(cluster: LocalCluster) -> ClusterHandle:
    return ClusterHandle(
        provider="local",
        kubeconfig=cluster.kubeconfig,
        kubectl_argv=[str(cluster.binary), "kubectl"],
        local=cluster,
    )


def kubeconfig_handle(path: Path, local_binary: Path | None) -> ClusterHandle:
    return ClusterHandle(
        provider="kubeconfig",
        kubeconfig=path,
        kubectl_argv=bundled_or_system_kubectl(local_binary),
    )


def kind_handle(kubeconfig: Path, kubectl: Sequence[str]) -> ClusterHandle:
    return ClusterHandle(provider="kind", kubeconfig=kubeconfig, kubectl_argv=list(kubectl))


@contextlib.contextmanager
def private_cluster(run_dir: Path, nodes: int) -> Iterator[tuple[LocalCluster, ClusterHandle]]:
    """A local control plane of a test's own (kwok nodes, the CRDs installed), for a
    test that breaks it; stopped afterwards, and no component may outlive it."""
    from stackforge_operator.devcluster.processes import processes_mentioning
    from tests.support import crds

    local = LocalCluster(run_dir, nodes=nodes)
    local.start()
    try:
        handle = local_handle(local)
        crds.install(handle)
        yield local, handle
    finally:
        local.stop()
        leftovers = local.alive_pids() + processes_mentioning(str(run_dir))
        if leftovers:
            raise RuntimeError(f"control-plane processes survived teardown: {leftovers}")
