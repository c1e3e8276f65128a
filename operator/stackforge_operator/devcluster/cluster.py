"""Start and stop a local control plane: etcd, kube-apiserver, controller-manager,
scheduler and kwok, each a process of the one multi-call binary; optionally
with one real node (``real_node=True``) whose pods really run."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from stackforge_operator import API_GROUP
from stackforge_operator.builders.common import OPERATOR_NAMESPACE
from stackforge_operator.devcluster import stages as kwok_stages
from stackforge_operator.devcluster.binary import ensure_binary, kwok_source_dir
from stackforge_operator.devcluster.kubeconfig import python_discovery_cache, write_kubeconfig
from stackforge_operator.devcluster.node.realnode import (
    KUBELET_CLIENT_USER,
    ImageArchive,
    RealNode,
)
from stackforge_operator.devcluster.pki import (
    FRONT_PROXY_CLIENT,
    ClusterPKI,
    KeyPair,
    create_front_proxy,
    create_pki,
    issue_certificate,
)
from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.devcluster.processes import ManagedProcess, pid_alive
from stackforge_operator.devcluster.supervisor import CrashRestarter

SERVICE_CIDR = "10.96.0.0/16"
# The first address of the service range is the `kubernetes` Service's.
SERVICE_IP = "10.96.0.1"
FAKE_NODE_PREFIX = "kwok-node-"
# The API server audits exactly the writes and reads (not watches) made by
# ServiceAccounts of the operator's namespace (JSON lines in <run dir>/audit.log):
# what the operator changed and what it asked, attributed to it, which the request
# counters cannot do.
AUDITED_GROUP = f"system:serviceaccounts:{OPERATOR_NAMESPACE}"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
READ_VERBS = ("get", "list")
ZONES = ("zone-a", "zone-b", "zone-c")


class ControlPlaneError(RuntimeError):
    pass


@dataclass(frozen=True)
class StartupTimings:
    etcd: float
    apiserver: float
    components: float
    total: float

    def summary(self) -> str:
        return (
            f"control plane usable in {self.total:.1f}s "
            f"(etcd {self.etcd:.1f}s, apiserver {self.apiserver:.1f}s, "
            f"nodes and controllers {self.components:.1f}s)"
        )


def audit_policy_document() -> dict[str, object]:
    """Metadata-level entries for writes and reads by :data:`AUDITED_GROUP`, nothing
    else; its writes to the operator's own resources with their bodies, so that a
    test finding a write it did not expect can say what was written."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Request", "userGroups": [AUDITED_GROUP], "verbs": list(WRITE_VERBS),
             "resources": [{"group": API_GROUP}]},
            {"level": "Metadata", "userGroups": [AUDITED_GROUP],
             "verbs": [*WRITE_VERBS, *READ_VERBS]},
            {"level": "None"},
        ],
    }


ETCD_DIR_PREFIX = "stackforge-etcd-"


def etcd_dir_prefix(pid: int) -> str:
    """The data directory's name names the process whose cluster it is: its etcd may
    be down a while (the chaos tests kill it), the process that started it not."""
    return f"{ETCD_DIR_PREFIX}{pid}-"


def sweep_abandoned_etcd_dirs(base: Path) -> list[Path]:
    """Remove etcd data directories of killed runs from ``base`` (RAM: up to etcd's
    quota each, which every killed session left behind for good): those whose
    process is gone (stop() removes its own); returns them."""
    removed = []
    for directory in base.glob(f"{ETCD_DIR_PREFIX}*-*"):
        owner = directory.name[len(ETCD_DIR_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and not pid_alive(int(owner)):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def _put_back(signum: int, handler: Any) -> None:
    if handler is not None:  # None: not installed from Python; nothing to put back
        signal.signal(signum, handler)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (then act as they would have);
    in the main thread only, the one Python delivers signals to."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler != signal.SIG_IGN:  # ignored (dev's teardown) stays ignored
            signal.signal(signum, lambda received, _frame: held.append(received))
    try:
        yield
    finally:
        # Each put back whatever arrives meanwhile (a KeyboardInterrupt raised
        # after the first must not leave the second swallowing TERMs for good).
        try:
            _put_back(signal.SIGINT, previous[signal.SIGINT])
        finally:
            _put_back(signal.SIGTERM, previous[signal.SIGTERM])
        for received in held[:1]:
            signal.raise_signal(received)


def fake_node_manifest(index: int) -> dict[str, object]:
    name = f"{FAKE_NODE_PREFIX}{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwok manages exactly the nodes carrying this annotation.
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": ZONES[index % len(ZONES)],
            },
        },
        "spec": {},
    }


class LocalCluster:
    """A real Kubernetes API for tests and local runs.

    Everything lives in ``run_dir``: certificates, kubeconfigs and one log per
    component. ``stop()`` leaves no process behind; children also die with
    the launching process if it is killed.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        binary: Path | None = None,
        nodes: int = 3,
        log: Callable[[str], None] | None = None,
        real_node: bool = False,
        images: Sequence[ImageArchive] = (),
    ) -> None:
        # Absolute: the node's socket endpoints are URLs (unix://run/... reads "run"
        # as a host), and the host's restore matches mounts by absolute path.
        self.run_dir = (run_dir or Path(tempfile.mkdtemp(prefix="stackforge-cp-"))).absolute()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._binary = binary
        self._node_count = nodes
        self._log = log or (lambda _msg: None)
        self._processes: list[ManagedProcess] = []
        # kwok, started again when it crashes (see supervisor.py).
        self.kwok_restarter: CrashRestarter | None = None
        self._etcd_dir: Path | None = None
        self._etcd_url = ""
        self._admin_tls: ssl.SSLContext | None = None
        self.pki: ClusterPKI | None = None
        self.server = ""
        self.kubeconfig = self.run_dir / "admin.kubeconfig"
        self.audit_log = self.run_dir / "audit.log"
        self.timings: StartupTimings | None = None
        self._storage_class: dict[str, object] = {}
        self.node: RealNode | None = RealNode(self.run_dir, log=self._log) if real_node else None
        self._images = list(images)
        # What the teardown could not put back on the host (empty when clean).
        self.host_differences: list[str] = []
        self._kubelet_client: KeyPair | None = None
        # (CA, client) of the aggregation layer, when a real node runs.
        self._front_proxy: tuple[KeyPair, KeyPair] | None = None

    @property
    def bind_address(self) -> str:
        """Where the API server listens: the node address when pods must reach it."""
        return self.node.network.node_ip if self.node else "127.0.0.1"

    # -- public API ---------------------------------------------------------

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = ensure_binary()
        return self._binary

    def start(self, timeout: float = 60.0) -> StartupTimings:
        binary = self.binary  # building, when needed, is not start-up time
        if self.node is not None:
            try:
                # Building its tools, when needed, is not start-up time either.
                self.node.prepare_host()
            except BaseException:
                # Past the host's record (the bridge's address refused, a Ctrl-C):
                # undone here, as a failure of the steps below is.
                self.stop()
                raise
        started = time.monotonic()
        deadline = started + timeout
        try:
            extra_ips = (self.bind_address,) if self.node else ()
            self.pki = create_pki(self.run_dir / "pki", SERVICE_IP, extra_server_ips=extra_ips)
            self._admin_tls = None  # of this PKI, made when first needed
            if self.node is not None:
                self._kubelet_client = issue_certificate(
                    self.pki, "apiserver-kubelet-client", KUBELET_CLIENT_USER)
                self._front_proxy = create_front_proxy(self.run_dir / "pki")
            etcd_url = self._start_etcd(binary, deadline)
            etcd_done = time.monotonic()
            self._start_apiserver(binary, etcd_url, deadline)
            apiserver_done = time.monotonic()
            self._start_components(binary)
            self._create_nodes()
            self._wait_usable(deadline)
            if self.node is not None:
                self.node.start(self, self._images, deadline)
        except BaseException:
            self.stop()
            raise
        finished = time.monotonic()
        self.timings = StartupTimings(
            etcd=etcd_done - started,
            apiserver=apiserver_done - etcd_done,
            components=finished - apiserver_done,
            total=finished - started,
        )
        self._log(self.timings.summary())
        return self.timings

    def stop(self) -> None:
        # The node first (its containers die with it), then clients of the
        # API, etcd last; the host is put back once nothing runs any more,
        # even when stopping something failed, and a second Ctrl-C (or a TERM)
        # meanwhile waits until it is: a half-restored host stays changed.
        with _signals_held():
            try:
                if self.kwok_restarter is not None:
                    self.kwok_restarter.stop()  # before kwok stops: no restart of a stop
                if self.node is not None:
                    self.node.stop_processes()
                for process in reversed(self._processes):
                    process.stop()
            finally:
                if self._etcd_dir is not None:
                    shutil.rmtree(self._etcd_dir, ignore_errors=True)
                    self._etcd_dir = None
                if self.node is not None:
                    differences = self.node.restore_host()
                    # None: nothing recorded, or restored already (a start that failed
                    # stops once itself, then its caller): what was found stays said.
                    if differences is not None:
                        self.host_differences = differences
                if self.server:
                    python_discovery_cache(self.server).unlink(missing_ok=True)

    def component(self, name: str) -> ManagedProcess:
        """A running component by name: etcd, kube-apiserver, kubelet, containerd..."""
        node = self.node.processes() if self.node else []
        for process in [*self._processes, *node]:
            if process.name == name:
                return process
        raise KeyError(f"no component {name!r}")

    def restart_component(self, name: str, timeout: float = 60.0) -> None:
        """Start a killed component again with its arguments (its port, its data),
        and wait until it serves: /health for etcd, /readyz for the API server,
        its socket for containerd, running for the others."""
        process = self.component(name)
        if process.running():
            raise ControlPlaneError(f"{name} is running: kill it first")
        process.start()
        self._log(f"restarted {name} (pid {process.pid})")
        deadline = time.monotonic() + timeout
        if name == "etcd":
            assert self._etcd_url
            _wait_for("etcd health", lambda: _etcd_healthy(self._etcd_url), deadline, process)
        elif name == "kube-apiserver":
            _wait_for("kube-apiserver /readyz", self._apiserver_ready, deadline, process)
        elif name == "containerd" and self.node is not None:
            # The kubelet exits at start-up when the runtime does not answer yet.
            _wait_for("containerd socket", self.node.runtime_answers, deadline, process)
        elif name == "kubelet":
            # containerd answers on its socket a moment before its CRI serves
            # ("server is not initialized yet"), and a kubelet that meets that
            # exits: started again, as systemd's Restart= would, until it stays.
            # (A CI run's node stayed NotReady for good after such an exit.)
            keep_running(process, deadline, log=self._log)
        elif not process.running():
            raise ControlPlaneError(f"{name} exited at once:\n{process.log_tail()}")

    def pids(self) -> list[int]:
        node = self.node.processes() if self.node else []
        return [p.pid for p in [*self._processes, *node] if p.pid is not None]

    def alive_pids(self) -> list[int]:
        return [pid for pid in self.pids() if pid_alive(pid)]

    def component_logs(self) -> dict[str, Path]:
        node = self.node.log_paths() if self.node else {}
        return {**{p.name: p.log_path for p in self._processes}, **node}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(
            self.binary, kubeconfig or self.kubeconfig, args, input=input, check=check,
            timeout=timeout,
        )

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- steps ----------------------------------------------------------------

    def _spawn(self, name: str, binary: Path, args: Sequence[str]) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            argv=[str(binary), name, *args],
            log_path=self.run_dir / f"{name}.log",
            # Components must not pick up a developer's KUBECONFIG by accident.
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )
        process.start()
        self._processes.append(process)
        self._log(f"started {name} (pid {process.pid}), log {process.log_path}")
        return process

    def _start_etcd(self, binary: Path, deadline: float) -> str:
        # A RAM-backed data dir plus no fsync make etcd fast; nothing in it
        # outlives the run.
        shm = Path("/dev/shm")  # noqa: S108 - mkdtemp below makes a private dir in it
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.run_dir
        sweep_abandoned_etcd_dirs(base)
        self._etcd_dir = Path(tempfile.mkdtemp(prefix=etcd_dir_prefix(os.getpid()), dir=base))
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        process = self._spawn(
            "etcd",
            binary,
            [
                "--name=default",
                f"--data-dir={self._etcd_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )

        self._etcd_url = client_url
        _wait_for("etcd health", lambda: _etcd_healthy(client_url), deadline, process)
        return client_url

    def _start_apiserver(self, binary: Path, etcd_url: str, deadline: float) -> None:
        assert self.pki is not None
        pki = self.pki
        port = free_port()
        self.server = f"https://{self.bind_address}:{port}"
        cert_dir = self.run_dir / "apiserver-certs"
        cert_dir.mkdir(exist_ok=True)
        audit_policy = self.run_dir / "audit-policy.yaml"
        audit_policy.write_text(yaml.safe_dump(audit_policy_document()))
        process = self._spawn(
            "kube-apiserver",
            binary,
            [
                f"--etcd-servers={etcd_url}",
                # The node address when a real node runs: pods reach the
                # `kubernetes` Service's endpoint there. Advertised explicitly:
                # a host with no default route cannot pick one.
                f"--bind-address={self.bind_address}",
                f"--advertise-address={self.bind_address}",
                *self._kubelet_client_args(),
                *self._aggregation_args(),
                f"--secure-port={port}",
                f"--cert-dir={cert_dir}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # RBAC on, so the operator's own roles are tested for real.
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={audit_policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                # Each entry is written before the request returns.
                "--audit-log-mode=blocking",
                # Never rotated (0 means the default, 100 MB): readers keep an offset
                # into this one file (tests/support/audit.py), and a scale run's
                # reads pass 100 MB within minutes.
                "--audit-log-maxsize=1000000",
                "--v=1",
            ],
        )
        admin = write_kubeconfig(
            self.kubeconfig, self.server, pki.ca.cert, pki.admin, name="stackforge-local"
        )
        _wait_for("kube-apiserver /readyz", self._apiserver_ready, deadline, process)
        self._log(f"API server ready at {self.server}; kubeconfig {admin}")

    def _apiserver_ready(self) -> bool:
        if self._admin_tls is None:
            # Made once: this is polled every quarter second while the API server starts.
            assert self.pki is not None
            self._admin_tls = ssl.create_default_context(cafile=str(self.pki.ca.cert))
            self._admin_tls.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        response = httpx.get(f"{self.server}/readyz", verify=self._admin_tls, timeout=2)
        return response.status_code == 200

    def _kubelet_client_args(self) -> list[str]:
        """How the API server reaches kubelets (logs, exec), when one runs."""
        if self._kubelet_client is None or self.pki is None:
            return []
        return [
            f"--kubelet-client-certificate={self._kubelet_client.cert}",
            f"--kubelet-client-key={self._kubelet_client.key}",
            f"--kubelet-certificate-authority={self.pki.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _aggregation_args(self) -> list[str]:
        """The aggregation layer, so that an extension API server on the real
        node (metrics-server) serves an API group through this one."""
        if self._front_proxy is None:
            return []
        ca, front_proxy_client = self._front_proxy
        return [
            f"--requestheader-client-ca-file={ca.cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy_client.cert}",
            f"--proxy-client-key-file={front_proxy_client.key}",
            # To the extension server's pod address, not its Service's: this
            # process is no pod, and kube-proxy's rules may be behind.
            "--enable-aggregator-routing=true",
        ]

    def _start_components(self, binary: Path) -> None:
        assert self.pki is not None
        pki = self.pki
        cm_config = write_kubeconfig(
            self.run_dir / "controller-manager.kubeconfig",
            self.server, pki.ca.cert, pki.controller_manager, name="controller-manager",
        )
        scheduler_config = write_kubeconfig(
            self.run_dir / "scheduler.kubeconfig",
            self.server, pki.ca.cert, pki.scheduler, name="scheduler",
        )
        self._spawn(
            "kube-controller-manager",
            binary,
            [
                f"--kubeconfig={cm_config}",
                f"--authentication-kubeconfig={cm_config}",
                f"--authorization-kubeconfig={cm_config}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.run_dir / 'controller-manager-certs'}",
                # Each controller acts as its own ServiceAccount with the
                # bootstrap policy's rights, as in a production cluster.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=stackforge-local",
                "--v=2",
            ],
        )
        self._spawn(
            "kube-scheduler",
            binary,
            [
                f"--kubeconfig={scheduler_config}",
                f"--authentication-kubeconfig={scheduler_config}",
                f"--authorization-kubeconfig={scheduler_config}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.run_dir / 'scheduler-certs'}",
                "--v=1",
            ],
        )
        if self._node_count == 0:
            return  # no fake nodes: kwok has nothing to manage
        stages_text = subprocess.run(
            [str(binary), "stages"], check=True, capture_output=True, text=True
        ).stdout
        stages = kwok_stages.exclude_runner_pods(kwok_stages.parse_stages(stages_text))
        volume_stages, self._storage_class = kwok_stages.load_volume_stages(kwok_source_dir())
        stages += volume_stages
        # Like most production classes, let claims grow (resizing is instant here).
        self._storage_class["allowVolumeExpansion"] = True
        kwok_config = self.run_dir / "kwok.yaml"
        kwok_config.write_text(kwok_stages.render_kwok_config(stages))
        kwok = self._spawn(
            "kwok",
            binary,
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--config={kwok_config}",
                f"--server-address=127.0.0.1:{free_port()}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            ],
        )
        self.kwok_restarter = CrashRestarter(kwok, log=self._log)
        self.kwok_restarter.start()

    def _create_nodes(self) -> None:
        if self._node_count == 0:
            return
        # The default StorageClass, whose claims kwok's volume stages bind.
        documents = [self._storage_class]
        documents += [fake_node_manifest(i) for i in range(self._node_count)]
        self.kubectl(
            "apply", "--server-side", "--field-manager=stackforge-devcluster", "-f", "-",
            input=yaml.safe_dump_all(documents),
        )

    def _wait_usable(self, deadline: float) -> None:
        def nodes_ready() -> bool:
            restarter = self.kwok_restarter
            if restarter is not None and restarter.gave_up:
                raise ControlPlaneError(
                    f"kwok crashed {restarter.limit + 1} times while waiting for fake nodes "
                    f"Ready; last log lines:\n{restarter.process.log_tail()}")
            result = self.kubectl(
                "get", "nodes", "-l", "type=kwok", "-o",
                'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}'
                "{\"\\n\"}{end}",
                check=False,
            )
            statuses = result.stdout.split()
            return len(statuses) == self._node_count and all(s == "True" for s in statuses)

        # Pods can only be created once the ServiceAccount controller has made
        # the namespace's `default` account.
        def default_service_account() -> bool:
            return self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                check=False).returncode == 0

        # A crashed kwok is its restarter's to answer, not a failed start.
        watched = [p for p in self._processes if p.name != "kwok"]
        for what, check in (("fake nodes Ready", nodes_ready),
                            ("default ServiceAccount", default_service_account)):
            _wait_for(what, check, deadline, None, processes=watched)


def kubectl_cache_dir(kubeconfig: Path) -> Path:
    """kubectl's discovery cache for a local cluster: beside its kubeconfig, in
    the run's directory, which goes with the cluster. The default,
    ~/.kube/cache, keeps a directory per host:port, and every local cluster
    has a new port (407 MB of them after two days of test and bench runs on
    one machine); another cluster that had the port once may also have served
    other resources, and `kubectl explain` trusts the cache."""
    return kubeconfig.parent / "kubectl-cache"


def run_kubectl(
    binary: Path,
    kubeconfig: Path,
    args: Sequence[str],
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    cache = kubectl_cache_dir(kubeconfig)
    result = subprocess.run(
        [str(binary), "kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise ControlPlaneError(
            f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def _etcd_healthy(client_url: str) -> bool:
    response = httpx.get(f"{client_url}/health", timeout=2)
    return response.status_code == 200 and response.json().get("health") == "true"


# How long a restarted program must run to count as started (keep_running).
SETTLE_SECONDS = 3.0


def keep_running(process: ManagedProcess, deadline: float,
                 log: Callable[[str], None] = lambda _msg: None) -> None:
    """Start ``process`` again whenever it exits within SETTLE_SECONDS of a start,
    until it stays up that long or ``deadline`` passes (then raise, with its log)."""
    while True:
        settled = time.monotonic() + SETTLE_SECONDS
        while process.running() and time.monotonic() < settled:
            time.sleep(0.1)
        if process.running():
            return
        if time.monotonic() >= deadline:
            raise ControlPlaneError(f"{process.name} kept exiting at start-up; last log "
                                    f"lines:\n{process.log_tail()}")
        log(f"{process.name} exited at start-up; starting it again")
        time.sleep(0.5)
        process.start()


def _wait_for(
    what: str,
    check: Callable[[], bool],
    deadline: float,
    process: ManagedProcess | None,
    *,
    processes: Sequence[ManagedProcess] = (),
) -> None:
    watched = [process] if process else list(processes)
    last_error = ""
    while time.monotonic() < deadline:
        for proc in watched:
            if not proc.running():
                raise ControlPlaneError(
                    f"{proc.name} exited while waiting for {what}; last log lines:\n"
                    f"{proc.log_tail()}"
                )
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError) as error:
            last_error = str(error)
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail(10)}" for p in watched)
    raise ControlPlaneError(f"timed out waiting for {what} ({last_error})\n{tails}")
