"""Fixtures of the cluster tests: tenant clean-up, and kube.py as the operator. (Backups and
drills run on the real node: tests/realnode.)"""

from collections.abc import Iterator

import pytest

from stackforge_operator import kube
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import OperatorIdentity


@pytest.fixture
def cleanup(cluster: ClusterHandle) -> Iterator[list[str]]:
    """Tenants a test created (it appends their names), deleted when it ends.

    Not waiting: names are unique, the teardown of their namespaces runs beside
    the next test, and the one test that counts writes waits for a quiet cluster itself.
    """
    names: list[str] = []
    yield names
    for name in names:
        tenants.discard(cluster, name)


@pytest.fixture
def kube_as_operator(
    operator_identity_installed: OperatorIdentity, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OperatorIdentity]:
    """kube.py in this process, connected to the test cluster as the operator's
    ServiceAccount: every call the reconcilers make is answered (and authorized by the
    shipped RBAC) by the real API server."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(operator_identity_installed.kubeconfig))
    kube.reset_clients()
    yield operator_identity_installed
    kube.reset_clients()
