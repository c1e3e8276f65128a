"""A real node whose launcher is killed (SIGKILL: no teardown of its own runs)
leaves the host as it found it: its guardian (devcluster/node/guardian.py) puts
it back. Host-global, like the other tests/host modules: no other real node may
run meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stackforge_operator.devcluster.node import hoststate
from stackforge_operator.devcluster.node.network import NodeNetwork
from stackforge_operator.devcluster.processes import processes_mentioning
from tests.support.tenants import eventually

LAUNCHER = Path(__file__).with_name("killed_launcher.py")
ROOT = Path(__file__).resolve().parents[2]


def _bridge_exists(bridge: str) -> bool:
    return subprocess.run(["ip", "link", "show", bridge], capture_output=True,
                          check=False).returncode == 0


def test_a_killed_launcher_leaves_the_host_as_it_found_it(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    bridge = NodeNetwork().bridge
    assert not _bridge_exists(bridge), f"a real node is running ({bridge}); run this alone"
    # Short: the node's unix sockets live under it.
    run_dir = tmp_path_factory.mktemp("killed")
    scope = str(run_dir / "node")
    before = hoststate.snapshot(scope)
    out = run_dir / "launcher.out"
    with out.open("w") as output:
        launcher = subprocess.Popen([sys.executable, str(LAUNCHER), str(run_dir)], cwd=ROOT,
                                    stdout=output, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: "READY" in out.read_text() or launcher.poll() is not None,
                   timeout=300, interval=1)
        assert "READY" in out.read_text(), out.read_text()
        # What the kill leaves: a container, its shim, the bridge and the node's rules.
        pods = [d for d in hoststate.node_process_pids(scope).values()
                if "in a pod cgroup" in d]
        assert pods, hoststate.node_process_pids(scope)
        assert _bridge_exists(bridge)
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
        log = run_dir / "node" / "guardian.log"
        eventually(lambda: log.exists() and "restored in" in log.read_text(), timeout=120,
                   interval=1)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert "host not restored" not in log.read_text(), log.read_text()
    assert not _bridge_exists(bridge)
    assert hoststate.differences(before, hoststate.snapshot(scope)) == []
    assert processes_mentioning(str(run_dir)) == []
