"""The watch caches against the real API server, as the operator's ServiceAccount:
LIST then WATCH fills a store, changes follow, kube.py's reads are answered from it,
and a kind the operator may not watch leaves its reads to the API server."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from typing import Any

import kopf
import pytest
from kubernetes import client

from stackforge_operator import kube, watch_cache
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.cached_kinds import CHILDREN_SCOPE
from stackforge_operator.informer import Informer
from stackforge_operator.watch_cache import UNKNOWN, Store, Unknown
from tests.support import audit
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
        assert not isinstance(found, Unknown)
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
    cluster: ClusterHandle, kube_as_operator: OperatorIdentity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    local = cluster.local
    mark = audit.mark(local.audit_log) if local is not None else 0
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
    # Said once, with what mends it, and not asked again every few seconds.
    said = [r.getMessage() for r in caplog.records if "forbidden to list" in r.getMessage()]
    assert len(said) == 1 and "ClusterRole" in said[0], said
    if local is not None:
        asked = [r for r in audit.reads_since(local.audit_log, mark, kube_as_operator.username)
                 if r.resource == "clusterroles"]
        # The informer's one LIST, and the read above.
        assert len(asked) == 2, asked


def test_secrets_are_counted_from_their_metadata_and_never_held(
    cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity
) -> None:
    """A customer's Secret the spec names moves its namespace's changes (a settled
    tenant's token) though the operator holds nothing of it, not even its data."""
    store = Store("v1", "Secret", counts_only=True)
    seen: list[Mapping[str, Any]] = []
    watched = store.watched

    def watched_and_kept(event_type: str, obj: Mapping[str, Any]) -> None:
        seen.append(obj)
        watched(event_type, obj)

    store.watched = watched_and_kept  # type: ignore[method-assign]
    informer = Informer(store)
    watch_cache.CACHES.add(store)
    informer.start()
    try:
        assert informer.wait_synced(15), "the first LIST of Secrets' metadata never completed"
        before = store.changes(namespace)
        elsewhere = store.changes("kube-system")
        core = client.CoreV1Api(cluster.api)
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="customer-tls"),
            string_data={"tls.key": "very-secret-key"}))
        eventually(lambda: store.changes(namespace) != before, timeout=10)
        assert store.changes("kube-system") == elsewhere
        # Only metadata came over the wire, and reads still go to the API server.
        mine = [o for o in seen if o["metadata"]["name"] == "customer-tls"]
        assert mine and all("data" not in o and "stringData" not in o for o in mine), mine
        assert mine[0]["kind"] == "PartialObjectMetadata"
        assert store.get("customer-tls", namespace) is UNKNOWN
        assert watch_cache.CACHES.get("v1", "Secret", "customer-tls", namespace) is UNKNOWN
        assert kube.get("v1", "Secret", "customer-tls", namespace)["data"]  # type: ignore[index]
    finally:
        watch_cache.CACHES.clear()
        informer.stop(timeout=1)


def test_each_watched_change_is_handed_on_after_the_store_has_it(
    namespace: str, kube_as_operator: OperatorIdentity
) -> None:
    """How a child's change wakes its tenant (wakeups.py): the store is current first,
    so the reconcile it wakes reads at least that version."""
    store = Store("v1", "ConfigMap", CHILDREN_SCOPE)
    handed: list[tuple[str, str, bool]] = []

    def on_event(event_type: str, obj: Any) -> None:
        meta = obj["metadata"]
        held = store.get(meta["name"], meta.get("namespace"))
        if event_type == "DELETED":
            current = held is UNKNOWN  # the store holds it no more
        else:
            current = (isinstance(held, dict)
                       and held["metadata"]["resourceVersion"] == meta["resourceVersion"])
        handed.append((event_type, meta["name"], current))

    informer = Informer(store, on_event)
    informer.start()
    try:
        assert informer.wait_synced(15)
        kube.apply(_config_map(namespace, "woken", OWNED_LABELS, "1"))
        kube.delete("v1", "ConfigMap", "woken", namespace)
        eventually(lambda: [(t, n) for t, n, _ in handed if n == "woken"]
                   == [("ADDED", "woken"), ("DELETED", "woken")], timeout=10)
        assert all(current for _, _, current in handed), handed
    finally:
        informer.stop(timeout=1)


def test_a_list_is_packed_page_by_page_into_what_the_store_keeps(
    cluster: ClusterHandle, namespace: str, kube_as_operator: OperatorIdentity
) -> None:
    for index in range(5):
        kube.apply(_config_map(namespace, f"paged-{index}", OWNED_LABELS, str(index)))
    store = Store("v1", "ConfigMap", CHILDREN_SCOPE)
    seen: list[str] = []

    def pack(obj: dict[str, Any]) -> Any:
        seen.append(obj["metadata"]["name"])
        return store.pack(obj)

    path = f"/api/v1/namespaces/{namespace}/configmaps"
    entries, version = kube.list_collection(kube.api_client(), path, TENANT_SELECTOR,
                                            page=2, keep=pack)
    # Three pages, every object packed once, none returned as it was parsed.
    assert sorted(seen) == [f"paged-{index}" for index in range(5)]
    assert len(entries) == 5 and not any(isinstance(e, dict) for e in entries)
    assert int(version) > 0
    store.replace_packed(entries)
    listed = store.list(namespace, TENANT_SELECTOR, "")
    assert not isinstance(listed, Unknown)
    assert sorted(o["data"]["value"] for o in listed) == ["0", "1", "2", "3", "4"]
    held = store.get("paged-3", namespace)
    assert isinstance(held, dict) and held["kind"] == "ConfigMap"


def test_informers_list_one_at_a_time_in_small_pages(
    kube_as_operator: OperatorIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each LIST still goes to the API server; only its span and page are noted.
    listing = kube.list_collection
    spans: list[tuple[float, float]] = []
    pages: list[int] = []

    def noted(*args: Any, **kwargs: Any) -> tuple[list[Any], str]:
        started = time.monotonic()
        try:
            return listing(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))
            pages.append(args[3])

    monkeypatch.setattr(kube, "list_collection", noted)
    informers = [Informer(Store(api_version, kind, CHILDREN_SCOPE)) for api_version, kind in (
        ("v1", "ConfigMap"), ("v1", "Service"), ("apps/v1", "Deployment"),
        ("networking.k8s.io/v1", "NetworkPolicy"), ("policy/v1", "PodDisruptionBudget"))]
    for informer in informers:
        informer.start()
    try:
        assert all(informer.wait_synced(15) for informer in informers)
    finally:
        for informer in informers:
            informer.stop()
    assert len(spans) == len(informers) and pages == [100] * len(informers), (spans, pages)
    # Each LIST began only after the one before it had ended.
    ordered = sorted(spans)
    for (_, ended), (began, _) in itertools.pairwise(ordered):
        assert began >= ended, ordered
