"""One real node (containerd + runc, kubelet, kube-proxy, DNS, policy enforcer).

Order of a start: the host state is recorded and the bridge made *before* the
API server starts (it binds the node address); then, once the API answers:
identities and their RBAC, containerd, images, kubelet (Node Ready),
kube-proxy, the policy enforcer (kube-router), storage, then CoreDNS as a
pod. A stop kills the node's processes and every container, then puts the
host back as recorded and reports what still differs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient

from stackforge_operator.devcluster.kubeconfig import write_kubeconfig
from stackforge_operator.devcluster.node import (
    guardian,
    hoststate,
    metrics_server,
    network,
    policy,
    runtime,
    services,
)
from stackforge_operator.devcluster.node.agent import (
    KubeletPaths,
    kubelet_args,
    kubelet_configuration,
)
from stackforge_operator.devcluster.node.scratch_image import ScratchImage, write_archive
from stackforge_operator.devcluster.node.storage import (
    LocalVolumeProvisioner,
    storage_class_manifests,
)
from stackforge_operator.devcluster.node.tools import ensure_node_tools
from stackforge_operator.devcluster.pki import issue_certificate
from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.devcluster.processes import ManagedProcess

if TYPE_CHECKING:
    from stackforge_operator.devcluster.cluster import LocalCluster

NODE_NAME = "real-node-0"
CATATONIT = Path("/usr/bin/catatonit")
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
ENFORCER_USER = "stackforge:network-policy"


# sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
UNIX_PATH_MAX = 107


class RealNodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class ImageArchive:
    """A built image to import: the reference pods use, its archive file, and what
    it was built from (an import is skipped when the node already has that)."""

    reference: str
    archive: Path
    fingerprint: str


class RealNode:
    def __init__(self, run_dir: Path, *, log: Callable[[str], None] | None = None,
                 network_: network.NodeNetwork | None = None) -> None:
        self.dir = run_dir.absolute() / "node"
        self.network = network_ or network.NodeNetwork()
        self.name = NODE_NAME
        self._log = log or (lambda _msg: None)
        self._before: hoststate.HostState | None = None
        self._guardian: guardian.Guardian | None = None
        self._host_lock: int | None = None
        self._processes: list[ManagedProcess] = []
        self.runtime_paths = runtime.RuntimePaths(self.dir / "containerd")
        self.kubelet_paths = KubeletPaths(self.dir)
        self._provisioner: LocalVolumeProvisioner | None = None
        self.tools_dir: Path | None = None

    # -- before the API server ---------------------------------------------------

    def prepare_host(self) -> None:
        """Record the host, then make the bridge the API server will bind on."""
        self._check_socket_paths()
        if os.geteuid() != 0:
            raise RealNodeError("a real node needs root (kubelet, containerd, bridge, iptables)")
        self.tools_dir = ensure_node_tools()
        # Before anything is recorded: a start refused here must not "restore" the
        # host to a snapshot holding a running node's bridge, rules and pods, nor
        # record what a killed node's guardian is still undoing.
        try:
            self._host_lock = guardian.hold_host()
        except guardian.HostBusyError as error:
            raise RealNodeError(str(error)) from None
        network.refuse_existing_bridge(self.network)
        before = hoststate.snapshot(str(self.dir))
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "host-before.txt").write_text(repr(before.sysctls) + "\n")
        self._before = before
        # Whatever ends this process from here on, the host is put back.
        self._guardian = guardian.start(before, str(self.dir), self.dir / "guardian.log",
                                        self._host_lock)
        network.create_bridge(self.network)

    def sockets(self) -> list[Path]:
        """The unix sockets the node's programs make under its directory (the longest)."""
        kubelet = self.kubelet_paths.root_dir
        return [self.runtime_paths.root / "containerd.sock.ttrpc",
                kubelet / "device-plugins" / "kubelet.sock",
                kubelet / "pod-resources" / "kubelet.sock"]

    def runtime_answers(self) -> bool:
        """containerd accepts connections on its socket (a killed one leaves the file)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(2)
            connection.connect(str(self.runtime_paths.socket))
        return True

    def _check_socket_paths(self) -> None:
        # Before anything changes on the host: past this length containerd or the
        # kubelet fails to listen, minutes in and with a message about a socket.
        too_long = [str(p) for p in self.sockets() if len(os.fsencode(p)) > UNIX_PATH_MAX]
        if too_long:
            raise RealNodeError(
                f"the run directory is too deep for the node's unix sockets ({too_long[0]} "
                f"is longer than {UNIX_PATH_MAX} bytes): use a shorter run directory")

    # -- after the API server ------------------------------------------------------

    def start(self, cluster: LocalCluster, images: Sequence[ImageArchive],
              deadline: float) -> None:
        assert self.tools_dir is not None, "prepare_host() first"
        kubelet_kubeconfig, proxy_kubeconfig, enforcer_kubeconfig = self._identities(cluster)
        self._start_containerd(deadline)
        self._import_images(images)
        self._start_kubelet(cluster, kubelet_kubeconfig, deadline)
        self._start_kube_proxy(cluster, proxy_kubeconfig)
        self._start_enforcer(enforcer_kubeconfig)
        self._provisioner = LocalVolumeProvisioner(cluster_api(cluster), self.name,
                                                   self.dir / "volumes")
        self._provisioner.start()
        documents = [*storage_class_manifests(), *services.dns_manifests(self.network)]
        cluster.kubectl("apply", "--server-side", "--field-manager=stackforge-devcluster",
                        "-f", "-", input=yaml.safe_dump_all(documents))
        self._wait_rollout(cluster, deadline)

    def stop_processes(self) -> None:
        """Stop the node's programs and every container (the API may already be gone)."""
        if self._provisioner is not None:
            self._provisioner.stop()
            self._provisioner = None
        # kube-proxy and kubelet first, so nothing restarts containers; then
        # every pod process and shim; containerd last.
        for process in reversed(self._processes):
            if process.name != "containerd":
                process.stop(timeout=5)
        if self._before is not None:
            # Never recorded, never started: every pod process on the host would
            # count as this node's (another node's pods, killed).
            hoststate.kill_node_processes(self._before.node_processes, str(self.dir))
        for process in self._processes:
            process.stop(timeout=5)

    def restore_host(self) -> list[str] | None:
        """Put the host back as recorded; returns what still differs (empty when
        clean), None when nothing was recorded (or it was restored already)."""
        if self._before is None:
            self._let_go_of_host()
            return None
        left = hoststate.restore(self._before, str(self.dir))
        self._before = None
        self._let_go_of_host()
        return left

    def _let_go_of_host(self) -> None:
        """The guardian ends without restoring anything, then the host's lock goes."""
        if self._guardian is not None:
            self._guardian.release()
            self._guardian = None
        if self._host_lock is not None:
            os.close(self._host_lock)
            self._host_lock = None

    def log_paths(self) -> dict[str, Path]:
        return {p.name: p.log_path for p in self._processes}

    def processes(self) -> list[ManagedProcess]:
        return list(self._processes)

    # -- steps ------------------------------------------------------------------------

    def _identities(self, cluster: LocalCluster) -> tuple[Path, Path, Path]:
        pki = cluster.pki
        assert pki is not None
        kubelet_client = issue_certificate(pki, "kubelet-client", f"system:node:{self.name}",
                                           "system:nodes")
        self.kubelet_serving = issue_certificate(
            pki, "kubelet-serving", f"system:node:{self.name}", "system:nodes",
            server_names=(self.name,), server_ips=(self.network.node_ip,))
        proxy_client = issue_certificate(pki, "kube-proxy", "system:kube-proxy")
        kubelet_kubeconfig = write_kubeconfig(self.dir / "kubelet.kubeconfig", cluster.server,
                                              pki.ca.cert, kubelet_client, name="kubelet")
        proxy_kubeconfig = write_kubeconfig(self.dir / "kube-proxy.kubeconfig", cluster.server,
                                            pki.ca.cert, proxy_client, name="kube-proxy")
        enforcer_client = issue_certificate(pki, "network-policy", ENFORCER_USER)
        enforcer_kubeconfig = write_kubeconfig(
            self.dir / "network-policy.kubeconfig", cluster.server, pki.ca.cert,
            enforcer_client, name="network-policy")
        # RBAC-only authorisation: nodes get the system:node role by group, and
        # the API server's client to kubelets (logs, exec) the kubelet API role.
        bindings = [
            _cluster_role_binding("stackforge:nodes", "system:node",
                                  {"kind": "Group", "name": "system:nodes"}),
            _cluster_role_binding("stackforge:apiserver-kubelet", "system:kubelet-api-admin",
                                  {"kind": "User", "name": KUBELET_CLIENT_USER}),
            _enforcer_role(),
            _cluster_role_binding("stackforge:network-policy", "stackforge:network-policy",
                                  {"kind": "User", "name": ENFORCER_USER}),
        ]
        cluster.kubectl("apply", "--server-side", "--field-manager=stackforge-devcluster",
                        "-f", "-", input=yaml.safe_dump_all(bindings))
        return kubelet_kubeconfig, proxy_kubeconfig, enforcer_kubeconfig

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None
               ) -> ManagedProcess:
        path = f"{self.tools_dir}:{os.environ.get('PATH', '')}"
        process = ManagedProcess(
            name=name, argv=argv, log_path=self.dir / f"{name}.log",
            env={**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, "PATH": path,
                 **(env or {})},
        )
        process.start()
        self._processes.append(process)
        self._log(f"started {name} (pid {process.pid}), log {process.log_path}")
        return process

    def _start_containerd(self, deadline: float) -> None:
        assert self.tools_dir is not None
        paths = self.runtime_paths
        paths.root.mkdir(parents=True, exist_ok=True)
        network.write_cni_config(self.network, paths.cni_conf_dir, paths.ipam_dir)
        paths.config.write_text(runtime.containerd_config(
            paths, pause_image=services.PAUSE_IMAGE))
        process = self._spawn("containerd", [str(self.tools_dir / "containerd"),
                                             f"--config={paths.config}"])
        _wait(lambda: paths.socket.exists(), "containerd socket", deadline, [process])

    def _import_images(self, images: Sequence[ImageArchive]) -> None:
        assert self.tools_dir is not None
        ctr = self.tools_dir / "ctr"
        runtime.forget_containers(ctr, self.runtime_paths)
        archives = self.dir / "images"
        scratch = [
            ScratchImage(services.PAUSE_IMAGE, CATATONIT, "/catatonit", ("/catatonit", "-P")),
            ScratchImage(services.COREDNS_IMAGE, self.tools_dir / "coredns", "/coredns",
                         ("/coredns",)),
            ScratchImage(metrics_server.METRICS_SERVER_IMAGE, self.tools_dir / "metrics-server",
                         "/metrics-server", ("/metrics-server",)),
            ScratchImage(services.TESTAPP_IMAGE, self.tools_dir / "testapp", "/testapp",
                         ("/testapp",), user="65532:65532"),
            # The same program as an image that runs as root, as many do: the
            # namespace's Pod Security refuses it unless the app names a user.
            ScratchImage(services.TESTAPP_ROOT_IMAGE, self.tools_dir / "testapp", "/testapp",
                         ("/testapp",), user="0:0"),
        ]
        wanted = []
        for image in scratch:
            fingerprint = _scratch_fingerprint(image)
            archive = archives / (image.reference.rsplit("/", 1)[1].replace(":", "_")
                                  + ".oci.tar")
            if not runtime.is_imported(ctr, self.runtime_paths, image.reference, fingerprint):
                write_archive(image, archive)
            wanted.append(ImageArchive(image.reference, archive, fingerprint))
        started = time.monotonic()
        imported = [item.reference for item in [*wanted, *images]
                    if runtime.import_image(ctr, self.runtime_paths, item.archive,
                                            item.reference, item.fingerprint)]
        self._log(f"images: {len(imported)} imported ({', '.join(imported) or 'none'}), "
                  f"{len(wanted) + len(images) - len(imported)} already on the node, "
                  f"{time.monotonic() - started:.1f}s")

    def _start_kubelet(self, cluster: LocalCluster, kubeconfig: Path, deadline: float) -> None:
        assert self.tools_dir is not None and cluster.pki is not None
        paths = self.kubelet_paths
        paths.resolv_conf.write_text("nameserver 127.0.0.53\noptions ndots:1\n")
        config = kubelet_configuration(
            network=self.network, paths=paths, runtime_endpoint=self.runtime_paths.endpoint,
            client_ca=cluster.pki.ca.cert, serving_cert=self.kubelet_serving.cert,
            serving_key=self.kubelet_serving.key, port=free_port(), healthz_port=free_port(),
        )
        paths.config.write_text(yaml.safe_dump(config))
        process = self._spawn("kubelet", [
            str(cluster.binary), "kubelet",
            *kubelet_args(paths=paths, kubeconfig=kubeconfig, node_name=self.name,
                          network=self.network)])

        def ready() -> bool:
            result = cluster.kubectl(
                "get", "node", self.name, "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False)
            return result.stdout.strip() == "True"

        _wait(ready, "real node Ready", deadline, [process])

    def _start_kube_proxy(self, cluster: LocalCluster, kubeconfig: Path) -> None:
        config_path = self.dir / "kube-proxy-config.yaml"
        config_path.write_text(yaml.safe_dump(services.kube_proxy_configuration(
            network=self.network, kubeconfig=kubeconfig, node_name=self.name,
            healthz_port=free_port(), metrics_port=free_port())))
        self._spawn("kube-proxy", [str(cluster.binary), "kube-proxy",
                                   f"--config={config_path}", "--v=1"])

    def _start_enforcer(self, kubeconfig: Path) -> None:
        assert self.tools_dir is not None
        self._spawn("kube-router", [str(self.tools_dir / "kube-router"), *policy.kube_router_args(
            kubeconfig=kubeconfig, node_name=self.name, health_port=free_port())])

    def _wait_rollout(self, cluster: LocalCluster, deadline: float) -> None:
        for kind, name in (("deployment", "coredns"),):
            remaining = max(1, int(deadline - time.monotonic()))
            result = cluster.kubectl("rollout", "status", "-n", "kube-system", f"{kind}/{name}",
                                     f"--timeout={remaining}s", check=False,
                                     timeout=remaining + 10)
            if result.returncode != 0:
                pods = cluster.kubectl("get", "pods", "-n", "kube-system", "-o", "wide",
                                       check=False).stdout
                raise RealNodeError(f"{kind}/{name} did not become ready: "
                                    f"{result.stderr.strip()}\n{pods}")


def _enforcer_role() -> dict[str, object]:
    """What kube-router's firewall reads: pods, namespaces, nodes and the policies."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "stackforge:network-policy"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes", "services",
                                              "endpoints"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
             "verbs": ["get", "list", "watch"]},
        ],
    }


def _scratch_fingerprint(image: ScratchImage) -> str:
    digest = hashlib.sha256(image.binary.read_bytes())
    digest.update(repr((image.path_in_image, image.entrypoint, image.user)).encode())
    return digest.hexdigest()


def _cluster_role_binding(name: str, role: str, subject: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
    }


def cluster_api(cluster: LocalCluster) -> ApiClient:
    api: ApiClient = kube_config.new_client_from_config(str(cluster.kubeconfig))
    return api


def _wait(check: Callable[[], bool], what: str, deadline: float,
          watched: Sequence[ManagedProcess]) -> None:
    while time.monotonic() < deadline:
        for process in watched:
            if not process.running():
                raise RealNodeError(f"{process.name} exited while waiting for {what}:\n"
                                    f"{process.log_tail()}")
        if check():
            return
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail(15)}" for p in watched)
    raise RealNodeError(f"timed out waiting for {what}\n{tails}")
