"""The watch caches against the real API server, as the operator's ServiceAccount:
LIST then WATCH fills a store, changes follow, kube.py's reads are answered from it,
and a kind the operator may not watch leaves its reads to the API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kubernetes import client

from stackforge_operator import kube, watch_cache
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.cached_kinds import CHILDREN_SCOPE
from stackforge_operator.informer import Informer
from stackforge_operator.watch_cache import UNKNOWN, Store
from tests.support.clusters import ClusterHandle
from tests.support.metrics import request_totals
from tests.support.operator_identity import OperatorIdentity
from tests.support.tenants import eventually

OWNED_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, TENANT_LABEL: "cached"}
TENANT_SELECTOR = f"{TENANT_LABEL}=cached,{MANAGED_BY_LABEL}={MANAGED_BY}"


def _config_map(namespace: str, name: str, labels: dict[str, str], value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"value": value}}


@pytest.fixture
def cached_config_maps(kube_as_operator: OperatorIdentity) -> Iterator[Informer]:
    informer = Informer(Store("v1", "ConfigMap", CHILDREN_SCOPE))
    watch_cache.CACHES.add(informer.store)
    informer.start()
    assert informer.wait_synced(15), "the first LIST of ConfigMaps never completed"
    yield informer
    watch_cache.CACHES.clear()
    informer.stop(timeout=1)


def test_a_store_follows_the_api_server_and_answers_reads(
    cluster: ClusterHandle, namespace: str, cached_config_maps: Informer
) -> None:
    store = cached_config_maps.store
    kube.apply(_config_map(namespace, "owned", OWNED_LABELS, "1"))
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="foreign"), data={"value": "x"}))

    def listed() -> list[dict[str, Any]]:
        found = store.list(namespace, TENANT_SELECTOR, "")
        assert not isinstance(found, type(UNKNOWN))
        return found

    eventually(lambda: [o["data"] for o in listed()] == [{"value": "1"}], timeout=10)
    # Outside the scope: the store cannot know; the API server does.
    assert store.get("foreign", namespace) is UNKNOWN
    assert kube.get("v1", "ConfigMap", "foreign", namespace) is not None

    before = request_totals(cluster)
    for _ in range(5):
        assert [o["metadata"]["name"] for o in kube.list_objects(
            "v1", "ConfigMap", namespace=namespace, label_selector=TENANT_SELECTOR)] == ["owned"]
        held = kube.get("v1", "ConfigMap", "owned", namespace)
        assert held is not None and "managedFields" not in held["metadata"]
    after = request_totals(cluster)
    delta = after - before
    assert delta[("LIST", "configmaps", "")] == 0, delta
    assert delta[("GET", "configmaps", "")] == 0, delta

    # Someone else changes it; then it is deleted.
    core.patch_namespaced_config_map("owned", namespace, {"data": {"value": "2"}})
    eventually(lambda: [o["data"] for o in listed()] == [{"value": "2"}], timeout=10)
    core.delete_namespaced_config_map("owned", namespace)
    eventually(lambda: listed() == [], timeout=10)
    assert kube.list_objects("v1", "ConfigMap", namespace=namespace,
                             label_selector=TENANT_SELECTOR) == []
    # One LIST for the whole test: every change came through the watch.
    assert cached_config_maps.lists == 1


def test_an_own_write_is_read_back_at_once(
    namespace: str, cached_config_maps: Informer
) -> None:
    applied = kube.apply(_config_map(namespace, "fresh", OWNED_LABELS, "3"))
    # Whether or not the watch has delivered it yet, the cache answers with the write.
    held = kube.get("v1", "ConfigMap", "fresh", namespace)
    assert held is not None
    assert int(held["metadata"]["resourceVersion"]) >= int(applied["metadata"]["resourceVersion"])
    assert held["data"] == {"value": "3"}


def test_a_kind_the_operator_may_not_watch_leaves_reads_to_the_api_server(
    kube_as_operator: OperatorIdentity,
) -> None:
    informer = Informer(Store("rbac.authorization.k8s.io/v1", "ClusterRole"))
    watch_cache.CACHES.add(informer.store)
    informer.start()
    try:
        assert not informer.wait_synced(3)
        # The API server's answer, as without a cache: forbidden, retried later.
        with pytest.raises(kopf.TemporaryError, match="forbidden"):
            kube.list_objects("rbac.authorization.k8s.io/v1", "ClusterRole")
    finally:
        watch_cache.CACHES.clear()
        informer.stop()
