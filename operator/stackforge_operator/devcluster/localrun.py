"""`stackforge-operator dev`: everything a developer needs to see the operator work.

By default on one real node: builds (when needed) the control plane, the
node's programs and the project's images, starts the cluster, an S3 server
pods reach over TLS and the operator, then applies ``examples/`` (adjusted to
what runs on the node, each change printed), seeds the example database, and
shows the tenant Ready on running pods, a backup Succeeded and a drill Passed.
``--kwok`` keeps the fake-node cluster, where pods never run.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import yaml

from stackforge_operator.devcluster.binary import ensure_binary
from stackforge_operator.devcluster.cluster import ControlPlaneError, LocalCluster
from stackforge_operator.devcluster.operator_process import OperatorProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES_DIR = REPO_ROOT / "examples"
STEPS = 6


def _step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}", flush=True)


def _info(text: str) -> None:
    print(f"      {text}", flush=True)


def install_crds(cluster: LocalCluster) -> None:
    from stackforge_operator import crdgen

    rendered = crdgen.render_all()
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=stackforge-operator", "-f", "-",
        input="---\n".join(rendered.values()),
    )
    names = [yaml.safe_load(text)["metadata"]["name"] for text in rendered.values()]
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        *(f"crd/{name}" for name in names),
    )


def install_kubelet_reader(cluster: LocalCluster) -> None:
    """The account whose tokens the operator shows the kubelets (rbac.KUBELET_READER;
    manifests/kubelet-reader.yaml), in the operator's namespace: without it a dev
    operator's volume figures stay unmeasured."""
    from stackforge_operator import manifestgen
    from stackforge_operator.builders.common import OPERATOR_NAMESPACE

    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": OPERATOR_NAMESPACE}}
    cluster.kubectl("apply", "--server-side", "--field-manager=stackforge-operator", "-f", "-",
                    input=yaml.safe_dump(namespace) + "---\n"
                    + manifestgen.render_kubelet_reader())


def apply_examples(cluster: LocalCluster) -> None:
    """Namespaces first, then everything that lives in them (kubectl keeps file order)."""
    documents = [
        doc for path in sorted(EXAMPLES_DIR.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text()) if doc
    ]
    ordered = sorted(documents, key=lambda d: d["kind"] != "Namespace")
    result = cluster.kubectl("apply", "--server-side", "-f", "-",
                             input=yaml.safe_dump_all(ordered))
    for line in result.stdout.splitlines():
        _info(line)


def run_local(run_dir: Path | None, *, once: bool, nodes: int, kwok: bool = False) -> int:
    if kwok:
        return _run_kwok(run_dir, once=once, nodes=nodes)
    from stackforge_operator.devcluster.realrun import run_real_node

    return run_real_node(run_dir, once=once)


def _run_kwok(run_dir: Path | None, *, once: bool, nodes: int) -> int:
    started = time.monotonic()
    _step(1, "control-plane binary (a cold Go build takes about 15 minutes on 2 cores)")
    binary = ensure_binary()
    _info(f"{binary}")

    _step(2, f"starting etcd, kube-apiserver, controller-manager, scheduler and kwok "
             f"({nodes} fake nodes: pods are marked Ready and never run)")
    cluster = LocalCluster(run_dir, binary=binary, nodes=nodes, log=_info)
    operator: OperatorProcess | None = None
    interrupt_on_signals()
    try:
        cluster.start()
        _step(3, "installing the StackForge CRDs")
        install_crds(cluster)
        install_kubelet_reader(cluster)
        _step(4, "starting the operator (stackforge-operator run)")
        operator = OperatorProcess(cluster.kubeconfig, cluster.run_dir / "operator.log")
        operator.start()
        _info(f"liveness {operator.liveness_url}; log {cluster.run_dir / 'operator.log'}")

        _step(5, f"applying {EXAMPLES_DIR}")
        if EXAMPLES_DIR.is_dir():
            apply_examples(cluster)
        else:
            _info("no examples/ directory next to the package; nothing applied")

        _step(6, "kubectl get stackforge (all StackForge resources)")
        print(get_all(cluster), flush=True)
        _info(f"ready in {time.monotonic() - started:.0f}s")
        _info(f"export KUBECONFIG={cluster.kubeconfig}")
        _info(f"kubectl is bundled: {binary} kubectl get stackforge -A")
        if once:
            return 0
        return watch(cluster, operator)
    except KeyboardInterrupt:
        return 0
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _info("stopping")
        if operator is not None:
            operator.stop()
        cluster.stop()


def interrupted(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT both raise KeyboardInterrupt, so that a run's teardown
    (which puts the host back) runs whichever stops it.

    SIGINT too: a program started in the background by a non-interactive shell
    inherits SIGINT ignored, and Python then installs no handler of its own,
    so a Ctrl-C or ``kill -INT`` would do nothing, and a TERM without this
    handler would end the process with the node's changes to the host left."""
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)


# kubectl shows times as ages ("26s", "5m10s", "3d"): they change by themselves.
_AGE = re.compile(r"^\d+[smhdy](\d+[smhd])?$")


def without_ages(row: str) -> str:
    """A row as far as it says something happened: its age columns blanked."""
    return " ".join("-" if _AGE.match(word) else word for word in row.split())


def changed_rows(shown: str, now: str) -> list[str]:
    """Rows of ``now`` that say something ``shown`` did not (an age going by is not news)."""
    seen = {without_ages(row) for row in shown.splitlines()}
    return [row for row in now.splitlines() if without_ages(row) not in seen]


def watch(cluster: LocalCluster, operator: OperatorProcess) -> int:
    """Until Ctrl-C: a line whenever a StackForge resource's row changes."""
    _info("watching; Ctrl-C stops everything (a line appears when a resource changes)")
    shown = get_all(cluster)
    while True:
        time.sleep(5)
        if not operator.process.running():
            print("the operator exited:\n" + operator.process.log_tail(), file=sys.stderr)
            return 1
        now = get_all(cluster)
        for row in changed_rows(shown, now):
            print(f"{time.strftime('%H:%M:%S')} {row}", flush=True)
        shown = now


def get_all(cluster: LocalCluster) -> str:
    result = cluster.kubectl("get", "stackforge", "--all-namespaces", check=False)
    return (result.stdout or result.stderr).rstrip()
