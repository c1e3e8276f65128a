"""Fixtures of the cluster tests: tenant clean-up, kube.py as the operator, and the
operator's own Pod. (Backups and drills run on the real node: tests/realnode.)"""

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import image_catalog, kube
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


@pytest.fixture
def default_image_catalog() -> Iterator[image_catalog.ImageCatalog]:
    """The image catalog's defaults, whatever the shell's environment holds (as every unit
    test has them); the process's catalog is put back afterwards."""
    catalog = image_catalog.from_settings({})
    previous = image_catalog.install(catalog)
    yield catalog
    image_catalog.install(previous)


@pytest.fixture
def own_pod(
    cluster: ClusterHandle, operator_identity_installed: OperatorIdentity,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[Mapping[str, Any]], str]]:
    """Puts this process in a Pod, as the Deployment does the operator: ``own_pod(spec)``
    creates a real Pod of ``spec`` (run as the operator's ServiceAccount) in the operator's
    namespace and names it in POD_NAME and POD_NAMESPACE, as the Deployment's downward API
    does; returns its name. The nodes are kwok's, so nothing has to run. Deleted afterwards.
    """
    core = client.CoreV1Api(cluster.api)
    namespace = operator_identity_installed.namespace
    created: list[str] = []

    def create(spec: Mapping[str, Any]) -> str:
        name = f"stackforge-operator-{uuid.uuid4().hex[:8]}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace,
                            "labels": {"stackforge.test/own-pod": "true"}},
               "spec": {"serviceAccountName": operator_identity_installed.service_account,
                        **spec}}
        created_by = cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
        created.append(name)
        assert "Warning" not in created_by.stderr, created_by.stderr  # e.g. Pod Security
        monkeypatch.setenv("POD_NAME", name)
        monkeypatch.setenv("POD_NAMESPACE", namespace)
        return name

    yield create
    for name in created:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
