"""`stackforge-operator dev`: the README's local-run command, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from stackforge_operator.devcluster.processes import processes_mentioning


def test_dev_command_runs_everything_and_shows_the_examples(tmp_path: Path) -> None:
    run_dir = tmp_path / "dev"
    result = subprocess.run(
        [sys.executable, "-m", "stackforge_operator", "dev", "--once", "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    assert "control plane usable in" in out
    assert "stackforgetenant.stackforge.io/acme serverside-applied" in out
    assert "backuppolicy.stackforge.io/acme-nightly serverside-applied" in out or (
        "backuppolicy.stackforge.io/" in out)
    assert "drdrill.stackforge.io/" in out
    # `kubectl get stackforge -A` of the applied examples.
    assert "stackforgetenant.stackforge.io/acme" in out and "Growth" in out
    # Its own control plane and operator are gone afterwards.
    assert processes_mentioning(str(run_dir)) == []
    assert (run_dir / "operator.log").exists()
