"""How a pod gets an IP: one Linux bridge, the Debian CNI plugins, host-local IPAM.

The launcher makes the bridge itself, with the node's address on it, before
anything else starts: the API server binds that address, so pods (whose
default route is the bridge) reach it, and so does kube-proxy's DNAT of the
``kubernetes`` Service. The bridge plugin then only attaches veths to it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Where Debian's containernetworking-plugins package puts the plugins.
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


@dataclass(frozen=True)
class NodeNetwork:
    """Addresses of the one real node; fixed, since only one runs per host."""

    bridge: str = "sfbr0"
    # Set, not left to the kernel: a bridge whose address the kernel chose takes
    # the lowest address of its ports, so it changed whenever a pod's veth came or
    # went, and every pod holding the old one in its ARP cache lost the node (the
    # API server, Services, the tests' S3 server) for the 30-60 s until the entry
    # expired. Locally administered (02:...), "SF" in the middle.
    bridge_mac: str = "02:53:46:00:00:01"
    node_ip: str = "10.244.0.1"
    pod_subnet: str = "10.244.0.0/24"
    # kube-proxy's view of all pod addresses (for masquerade decisions).
    cluster_cidr: str = "10.244.0.0/16"
    dns_service_ip: str = "10.96.0.10"

    @property
    def prefix_length(self) -> int:
        return int(self.pod_subnet.split("/")[1])


class NetworkSetupError(RuntimeError):
    pass


def cni_bin_dir() -> str:
    for directory in CNI_BIN_DIRS:
        if (Path(directory) / "bridge").exists():
            return directory
    raise NetworkSetupError(
        "no CNI plugins found (looked in " + ", ".join(CNI_BIN_DIRS) + "); install Debian's "
        "containernetworking-plugins package")


def conflist(network: NodeNetwork, ipam_dir: Path) -> dict[str, object]:
    """The CNI network every pod joins."""
    return {
        "cniVersion": "1.0.0",
        "name": "stackforge",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                # A pod that reaches its own Service is sent back to itself.
                "hairpinMode": True,
                # Nothing leaves the host: no masquerading rules to add.
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_subnet, "gateway": network.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # Leases under the run directory, not /var/lib/cni.
                    "dataDir": str(ipam_dir),
                },
            },
        ],
    }


def write_cni_config(network: NodeNetwork, conf_dir: Path, ipam_dir: Path) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    ipam_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "10-stackforge.conflist"
    path.write_text(json.dumps(conflist(network, ipam_dir), indent=2))
    return path


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkSetupError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def refuse_existing_bridge(network: NodeNetwork) -> None:
    """Raises if the bridge exists: another node runs, or one's teardown has not
    finished (its guardian restores the host of a node whose launcher died)."""
    existing = subprocess.run(["ip", "link", "show", network.bridge], capture_output=True,
                              check=False)
    if existing.returncode == 0:
        raise NetworkSetupError(
            f"link {network.bridge} already exists: another real node is running on this "
            "host, or one's teardown has not finished (a node whose launcher was killed is "
            "restored by its guardian: node/guardian.log in its run directory); stop it "
            "and wait for its teardown")


def create_bridge(network: NodeNetwork) -> None:
    """The bridge, up, with the node address and a fixed MAC address (see
    :attr:`NodeNetwork.bridge_mac`); refuses to reuse a leftover one."""
    refuse_existing_bridge(network)
    _ip("link", "add", network.bridge, "address", network.bridge_mac, "type", "bridge")
    _ip("addr", "add", f"{network.node_ip}/{network.prefix_length}", "dev", network.bridge)
    _ip("link", "set", network.bridge, "up")


def delete_bridge(network: NodeNetwork) -> None:
    subprocess.run(["ip", "link", "delete", network.bridge], capture_output=True, check=False)
