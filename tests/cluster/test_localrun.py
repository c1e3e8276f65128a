"""`stackforge-operator dev`: the README's local-run command, end to end.

The default starts a real node of its own, so it runs while no other real node
does: tests/cluster sorts before tests/realnode, whose session cluster starts
later (one real node per host).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stackforge_operator.devcluster.node.network import NodeNetwork
from stackforge_operator.devcluster.processes import processes_mentioning


def _dev(run_dir: Path, *extra: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackforge_operator", "dev", "--once", "--run-dir", str(run_dir),
         *extra],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


# Builds are cached by then (.ci/run builds first); a cold image build could take longer.
@pytest.mark.timeout(1000)
def test_dev_shows_the_example_tenant_ready_on_running_pods_a_backup_and_a_drill(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    bridge = NodeNetwork().bridge
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True,
                          check=False).returncode != 0, f"a real node is running ({bridge})"
    # Short: the node's unix sockets live under it (a test's own tmp_path is too deep).
    run_dir = tmp_path_factory.mktemp("dev")
    result = _dev(run_dir, timeout=900)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in range(1, 9):
        assert f"[{step}/8]" in out
    assert "node Ready" in out
    # Every change to examples/ is said.
    assert "StackForgeTenant acme: redis off" in out
    assert "tenant tenant-acme/acme Ready on running pods" in out
    assert "real-node-0" in out  # `kubectl get pods -o wide` of the tenant
    assert "backup Succeeded" in out
    assert "drill Passed" in out
    assert "AllComponentsReady" in out
    # Everything it started is gone, and the host is as it was.
    assert processes_mentioning(str(run_dir)) == []
    assert "host not restored" not in result.stderr
    assert (run_dir / "operator.log").exists()


def test_dev_with_kwok_applies_the_examples_to_fake_nodes(tmp_path: Path) -> None:
    run_dir = tmp_path / "dev-kwok"
    result = _dev(run_dir, "--kwok", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    assert "control plane usable in" in out
    assert "stackforgetenant.stackforge.io/acme serverside-applied" in out
    assert "backuppolicy.stackforge.io/" in out
    assert "drdrill.stackforge.io/" in out
    # `kubectl get stackforge -A` of the applied examples.
    assert "stackforgetenant.stackforge.io/acme" in out and "Growth" in out
    assert processes_mentioning(str(run_dir)) == []
    assert (run_dir / "operator.log").exists()
