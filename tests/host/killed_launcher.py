"""A launcher of a real node that is killed: started by test_node_killed.py.

Starts a cluster with one real node in the run directory it is given, runs a pod
on it (a container and its shim: what outlives a killed launcher), prints READY
and waits to be killed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from stackforge_operator.devcluster.cluster import LocalCluster
from stackforge_operator.devcluster.node.services import PAUSE_IMAGE

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "outliver", "namespace": "default"},
    "spec": {"containers": [{"name": "pause", "image": PAUSE_IMAGE,
                             "imagePullPolicy": "Never"}],
             "automountServiceAccountToken": False},
}


def main(run_dir: Path) -> None:
    cluster = LocalCluster(run_dir, nodes=0, real_node=True, images=[])
    cluster.start(timeout=180)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(POD))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/outliver", "--timeout=120s",
                    timeout=150)
    print("READY", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
