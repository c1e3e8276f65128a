"""The host-state snapshot sees what a node changes, and restore() undoes it.

Runs for real as root: each change below is one a kubelet, kube-proxy, the
CNI plugins or containerd make on a real node. It restores whole netfilter
tables, so it runs while no real node does (tests/host sorts before
tests/realnode, whose session cluster would still be up after).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stackforge_operator.devcluster.node import hoststate
from stackforge_operator.devcluster.node.network import NodeNetwork


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def test_restore_undoes_every_kind_of_node_change(tmp_path: Path) -> None:
    bridge = NodeNetwork().bridge
    running = subprocess.run(["ip", "link", "show", bridge], capture_output=True, check=False)
    assert running.returncode != 0, f"a real node is running ({bridge} exists); run this alone"
    before = hoststate.snapshot()
    panic = before.sysctls["kernel.panic"]
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    cgroup = Path("/sys/fs/cgroup/pids/kubepods-stackforge-hoststate-test")
    try:
        Path("/proc/sys/kernel/panic").write_text(str(int(panic) + 9))
        _sh("ip", "link", "add", "sfhosttest0", "type", "bridge")
        _sh("iptables", "-t", "nat", "-N", "KUBE-SFHOSTTEST")
        _sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "KUBE-SFHOSTTEST")
        _sh("nft", "add", "table", "inet", "sfhosttest")
        _sh("ipset", "create", "sfhosttest", "hash:ip")
        _sh("ip", "netns", "add", "sfhosttest")
        cgroup.mkdir()
        _sh("mount", "-t", "tmpfs", "tmpfs", str(mount_point))

        found = "\n".join(hoststate.differences(before, hoststate.snapshot()))
        for expected in (f"sysctl kernel.panic: {panic} -> {int(panic) + 9}",
                         "link sfhosttest0 was added",
                         # "was added" on a host without it, else "has other rules".
                         "nft table ip nat ",
                         "nft table inet sfhosttest was added",
                         "ipset sfhosttest was added",
                         "network namespace sfhosttest was added",
                         "cgroup pids/kubepods-stackforge-hoststate-test was added",
                         f"mount {mount_point} was added"):
            assert expected in found, found
    finally:
        left = hoststate.restore(before)
    assert left == []
    assert Path("/proc/sys/kernel/panic").read_text().strip() == panic
    assert "KUBE-SFHOSTTEST" not in subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    assert not cgroup.exists()
