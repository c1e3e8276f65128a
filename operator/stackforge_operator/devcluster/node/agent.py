"""The kubelet of the real node: its configuration and command line.

Everything the kubelet would otherwise write under /var/lib/kubelet,
/var/log/pods or /usr/libexec goes under the node's directory instead. The
settings that differ from a production node are the ones this kind of host
needs (measured, see docs/realnode.md): cgroupfs on a cgroup v1 layout, swap
tolerated, and no lowered OOM scores (the sandbox lacks CAP_SYS_RESOURCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackforge_operator.devcluster.node.network import NodeNetwork


@dataclass(frozen=True)
class KubeletPaths:
    root: Path

    @property
    def root_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def volume_plugins(self) -> Path:
        return self.root / "volume-plugins"

    @property
    def config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"


def kubelet_configuration(
    *,
    network: NodeNetwork,
    paths: KubeletPaths,
    runtime_endpoint: str,
    client_ca: Path,
    serving_cert: Path,
    serving_key: Path,
    port: int,
    healthz_port: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # The API server's requests (logs, exec) are authenticated by client
        # certificate and authorised through SubjectAccessReviews, as in production.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "containerRuntimeEndpoint": runtime_endpoint,
        "cgroupDriver": "cgroupfs",
        # This host has the hybrid cgroup v1 layout; kubelet 1.36 refuses it by default.
        "failCgroupV1": False,
        "failSwapOn": False,
        # Lowering OOM scores needs CAP_SYS_RESOURCE, which this host lacks.
        "oomScoreAdj": 0,
        "clusterDNS": [network.dns_service_ip],
        "clusterDomain": "cluster.local",
        # Pods with dnsPolicy Default get this file, not the host's.
        "resolvConf": str(paths.resolv_conf),
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.volume_plugins),
        "serializeImagePulls": False,
        # Images are imported, never pulled: keep them even when the disk fills.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # The shared disk is large and busy; only evict on real exhaustion.
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        "syncFrequency": "10s",
        # Volume statistics (kubelet_volume_stats_*, what the disk alert reads) every
        # 10 s rather than every minute: the full-volume test waits for them, and the
        # node's few volumes are cheap to measure.
        "volumeStatsAggPeriod": "10s",
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "maxPods": 110,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


def kubelet_args(*, paths: KubeletPaths, kubeconfig: Path, node_name: str,
                 network: NodeNetwork) -> list[str]:
    return [
        f"--config={paths.config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.root_dir}",
        f"--cert-dir={paths.root / 'kubelet-pki'}",
        f"--hostname-override={node_name}",
        f"--node-ip={network.node_ip}",
        "--node-labels=type=real,topology.kubernetes.io/zone=zone-a,"
        "stackforge.io/real-node=true",
        "--v=1",
    ]
