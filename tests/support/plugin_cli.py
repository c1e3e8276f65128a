"""`kubectl stackforge` as users run it: the installed executable with a cluster's
kubeconfig."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.clusters import ClusterHandle

PLUGIN = Path(sys.executable).parent / "kubectl-stackforge"


def plugin(cluster: ClusterHandle, *args: str, timeout: float = 120,
           kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The plugin as the cluster's admin, or as the user of ``kubeconfig``."""
    return subprocess.run([str(PLUGIN), "--kubeconfig", str(kubeconfig or cluster.kubeconfig),
                           *args], capture_output=True, text=True, timeout=timeout, check=False)
