"""A control plane of the chaos tests' own: its API server and etcd are killed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackforge_operator.devcluster import LocalCluster
from tests.support import operator_identity
from tests.support.clusters import ClusterHandle, private_cluster
from tests.support.operator_identity import OperatorIdentity


@pytest.fixture(scope="module")
def faulty_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[tuple[LocalCluster, ClusterHandle, OperatorIdentity]]:
    """A local control plane with kwok nodes (a module's ``FAULTY_CLUSTER_NODES``,
    else 3), the CRDs and the operator's identity; not the session's: killing its
    components must not touch other tests. Its own whatever the session's provider
    (kind, a kubeconfig): the faults need processes this launcher owns, and a
    private one always is."""
    run_dir = tmp_path_factory.mktemp("faulty-controlplane")
    nodes = int(getattr(request.module, "FAULTY_CLUSTER_NODES", 3))
    with private_cluster(run_dir, nodes=nodes) as (local, handle):
        identity = operator_identity.install(handle, run_dir / "operator.kubeconfig")
        yield local, handle, identity
