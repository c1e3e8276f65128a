"""Starting the operator against the real-node cluster (a host process, as its
ServiceAccount), for the conftest's fixture and modules that need other settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackforge_operator.devcluster.images import write_project_catalog
from stackforge_operator.devcluster.node.runtime import LOCAL_REGISTRY
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import operator_identity


@contextlib.contextmanager
def operator_running(identity: operator_identity.OperatorIdentity,
                     tmp_path_factory: pytest.TempPathFactory,
                     kubeconfig: Path | None = None,
                     **extra_env: str) -> Iterator[OperatorProcess]:
    """The operator, as its ServiceAccount, managing the real-node cluster with quick
    resyncs (plus ``extra_env``); its runner Jobs run the project's operator image on
    the node. ``kubeconfig``: the identity's, reaching the API server another way
    (through a fault proxy)."""
    directory = tmp_path_factory.mktemp("real-operator")
    catalog = write_project_catalog(directory / "catalog.yaml")
    process = OperatorProcess(
        kubeconfig or identity.kubeconfig, directory / "operator.log", extra_args=("--verbose",),
        extra_env={"STACKFORGE_RESYNC_SECONDS": "3", "STACKFORGE_STALLED_RECHECK_SECONDS": "3",
                   "STACKFORGE_ADDON_CHECK_SECONDS": "3",
                   # Every image the operator names is one imported into the node.
                   "STACKFORGE_IMAGE_REGISTRY": LOCAL_REGISTRY,
                   "STACKFORGE_IMAGE_CATALOG": str(catalog), **extra_env},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
