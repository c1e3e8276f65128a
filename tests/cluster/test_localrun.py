"""`stackforge-operator dev`: the README's local-run command, end to end.

The default starts a real node of its own, so it runs while no other real node
does: tests/cluster sorts before tests/realnode, whose session cluster starts
later (one real node per host).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stackforge_operator.devcluster.node.network import NodeNetwork
from stackforge_operator.devcluster.processes import processes_mentioning
from tests.support.signals import default_stop_signals


def _wait_for_line(path: Path, text: str, process: subprocess.Popen[bytes],
                   timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, f"dev exited before {text!r}:\n{path.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} in {timeout}s:\n{path.read_text()}"
        time.sleep(0.2)


def _run_until_watching_then_ctrl_c_twice(run_dir: Path, tmp_path: Path, *extra: str,
                                          timeout: float) -> tuple[int, str, str]:
    """dev until it watches, then two Ctrl-Cs the way a terminal sends them (to
    the whole foreground process group, the components dev started included),
    the second while it is stopping. Its exit code, stdout and stderr."""
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "stackforge_operator", "dev", "--run-dir", str(run_dir),
             *extra],
            stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=default_stop_signals)  # as in a terminal
    try:
        _wait_for_line(out_path, "watching", process, timeout=timeout)
        os.killpg(process.pid, signal.SIGINT)
        _wait_for_line(out_path, "stopping", process, timeout=30)
        os.killpg(process.pid, signal.SIGINT)
        returncode = process.wait(timeout=180)
    finally:
        if process.poll() is None:
            # Failed above: still let it stop everything (a real node left running
            # would change the host for every later test), then insist.
            process.terminate()
            try:
                process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return returncode, out_path.read_text(), err_path.read_text()


# Builds are cached by then (.ci/run builds first); a cold image build could take longer.
@pytest.mark.timeout(1000)
def test_dev_shows_the_example_tenant_ready_on_running_pods_a_backup_and_a_drill(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    bridge = NodeNetwork().bridge
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True,
                          check=False).returncode != 0, f"a real node is running ({bridge})"
    # Short: the node's unix sockets live under it (a test's own tmp_path is too deep).
    run_dir = tmp_path_factory.mktemp("dev")
    returncode, out, err = _run_until_watching_then_ctrl_c_twice(
        run_dir, tmp_path_factory.mktemp("dev-output"), timeout=900)
    assert returncode == 0, out + err
    assert "Traceback" not in err, err
    for step in range(1, 9):
        assert f"[{step}/8]" in out
    assert "node Ready" in out
    # Every change to examples/ is said.
    assert "StackForgeTenant acme: consul off" in out
    assert "tenant tenant-acme/acme Ready on running pods" in out
    assert "real-node-0" in out  # `kubectl get pods -o wide` of the tenant
    assert "backup Succeeded" in out
    assert "drill Passed" in out
    assert "AllComponentsReady" in out
    # Everything it started is gone, and the host is as it was, although the
    # Ctrl-Cs reached the node's own processes too.
    assert processes_mentioning(str(run_dir)) == []
    assert "host not restored" not in err
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True,
                          check=False).returncode != 0
    assert (run_dir / "operator.log").exists()


def test_dev_with_kwok_applies_the_examples_and_two_ctrl_cs_stop_it_cleanly(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "dev-kwok"
    returncode, out, err = _run_until_watching_then_ctrl_c_twice(
        run_dir, tmp_path, "--kwok", timeout=300)
    assert returncode == 0, out + err
    assert "Traceback" not in err, err
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
