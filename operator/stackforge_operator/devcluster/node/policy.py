"""The NetworkPolicy enforcer: kube-router with only its firewall on, as a host process.

Chosen for what this kernel offers. kube-network-policies (what kind runs)
was the first choice, but it decides in userspace through nftables' ``queue``
expression, and this kernel has no nft_queue: every sync fails with "netlink
receive: no such file or directory" and no policy is ever enforced.
kube-router's firewall uses iptables (through iptables-nft here) and ipsets,
both of which this kernel has, and does nothing else when its router and
service proxy are off: the bridge CNI keeps the pod network, kube-proxy the
Services. It reads the API with a kubeconfig, so it needs no image.
"""

from __future__ import annotations

from pathlib import Path

ENFORCER_VERSION = "v2.1.0"


def kube_router_args(*, kubeconfig: Path, node_name: str, health_port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node_name}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--run-loadbalancer=false",
        # The bridge plugin owns the CNI configuration.
        "--enable-cni=false",
        "--enable-pod-egress=false",
        f"--health-port={health_port}",
        "--metrics-port=0",
        # Re-check every rule often: tests change policies and expect them at once.
        "--iptables-sync-period=5s",
        "--v=1",
    ]
