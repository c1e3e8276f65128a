"""reconcile/drill.py against the API server: which pull secrets a drill sandbox gets
copies of, read (as the operator's ServiceAccount) from the drill's own namespace."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from kubernetes import client

from stackforge_operator import image_catalog
from stackforge_operator.builders import drill as builders
from stackforge_operator.reconcile import drill
from tests.support.clusters import ClusterHandle
from tests.support.metrics import request_totals
from tests.support.tenants import put_secret

pytestmark = pytest.mark.usefixtures("kube_as_operator")


@pytest.fixture
def pull_secrets() -> Iterator[image_catalog.ImageCatalog]:
    """The operator's catalog naming three pull secrets: one that exists, one that does
    not, and one named like a Secret of the sandbox's own."""
    catalog = image_catalog.from_settings({
        image_catalog.PULL_SECRETS_ENV: f"regcred,absent,{builders.S3_SECRET}"})
    previous = image_catalog.install(catalog)
    yield catalog
    image_catalog.install(previous)


@pytest.fixture
def other_namespace(cluster: ClusterHandle, namespace: str) -> Iterator[str]:
    core = client.CoreV1Api(cluster.api)
    name = f"{namespace[:50]}-other"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.usefixtures("pull_secrets")
def test_pull_secrets_come_from_the_drills_namespace(
        cluster: ClusterHandle, namespace: str, other_namespace: str,
        caplog: pytest.LogCaptureFixture) -> None:
    core = client.CoreV1Api(cluster.api)
    regcred = core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="regcred"), type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": json.dumps({"auths": {}})}))
    put_secret(cluster, namespace, builders.S3_SECRET, {"AWS_ACCESS_KEY_ID": "tenant's"})
    # "absent" exists, but elsewhere: only the drill's namespace is looked in.
    put_secret(cluster, other_namespace, "absent", {"x": "y"})

    before = request_totals(cluster)
    with caplog.at_level(logging.WARNING):
        found = drill._pull_secrets(namespace)
    after = request_totals(cluster)

    # Missing: skipped (the runtime pulls without it, as for the tenant's own pods).
    assert list(found) == ["regcred"]
    copied = found["regcred"]
    assert regcred.metadata is not None
    assert (copied["metadata"]["namespace"], copied["metadata"]["uid"]) == (
        namespace, regcred.metadata.uid)
    assert copied["type"] == "kubernetes.io/dockerconfigjson"
    assert ".dockerconfigjson" in copied["data"]
    # Named like a sandbox Secret: never read (two GETs: regcred and absent), never
    # copied, and said so.
    assert (after - before)[("GET", "secrets", "")] == 2
    assert builders.S3_SECRET in caplog.text
