"""The watch caches' stores: what they answer, what they leave to the API server."""

from __future__ import annotations

import threading
import zlib
from typing import Any

import pytest

from stackforge_operator import watch_cache
from stackforge_operator.watch_cache import (
    EVERY_NAMESPACE,
    UNKNOWN,
    Caches,
    Packer,
    Store,
    Unknown,
)

SCOPE = "managed=op,tenant"


def obj(name: str, namespace: str = "ns", version: str = "5", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version,
                         "labels": labels, "managedFields": [{"manager": "x"}]},
            "data": {"v": version}}


def owned(name: str, namespace: str = "ns", version: str = "5",
          tenant: str = "shop") -> dict[str, Any]:
    return obj(name, namespace, version, managed="op", tenant=tenant)


def answered(found: list[dict[str, Any]] | Unknown) -> list[dict[str, Any]]:
    """A list the test expects the store to answer rather than leave to the API server."""
    assert isinstance(found, list), found
    return found


def test_nothing_is_answered_before_the_first_list() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    assert store.list("ns", "managed=op,tenant=shop", "") is UNKNOWN
    assert store.get("a", "ns") is UNKNOWN


def test_a_scoped_store_answers_lists_inside_its_scope_only() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a"), owned("b", tenant="other"), owned("c", namespace="elsewhere")])
    names = [o["metadata"]["name"] for o in answered(store.list("ns", "tenant=shop,managed=op",
                                                                 ""))]
    assert names == ["a"]
    assert store.list("ns", "tenant=shop", "") is UNKNOWN
    assert store.list("ns", "tenant=shop,managed=op", "status.phase=x") is UNKNOWN
    assert store.list("ns", "tenant in (shop),managed=op", "") is UNKNOWN


def test_a_scoped_store_knows_what_it_holds_not_what_it_lacks() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a")])
    found = store.get("a", "ns")
    assert isinstance(found, dict)
    assert "managedFields" not in found["metadata"]
    assert found["data"] == {"v": "5"}
    # Perhaps an object without the operator's labels: the API server knows.
    assert store.get("b", "ns") is UNKNOWN


def test_a_miss_is_asked_of_the_api_server_even_in_a_store_of_every_object() -> None:
    # Its watch may not have delivered an object made a moment ago.
    store = Store("v1", "Namespace")
    store.replace([{"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "tenant-a", "resourceVersion": "3"}}])
    assert store.get("tenant-b", None) is UNKNOWN
    found = store.get("tenant-a", None)
    assert isinstance(found, dict) and found["metadata"]["name"] == "tenant-a"


def test_field_selectors_on_name_and_namespace() -> None:
    store = Store("stackforge.io/v1alpha1", "StackForgeTenant")
    store.replace([obj("shop", "a"), obj("shop", "b"), obj("other", "a")])
    found = answered(store.list(None, "", "metadata.name=shop"))
    assert sorted(o["metadata"]["namespace"] for o in found) == ["a", "b"]
    assert [o["metadata"]["name"]
            for o in answered(store.list("a", "", "metadata.name=shop"))] == ["shop"]
    assert store.list("a", "", "metadata.namespace=b") == []


def test_each_read_gets_its_own_copy() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a")])
    first = store.get("a", "ns")
    assert isinstance(first, dict)
    first["data"]["v"] = "changed by a caller"
    second = store.get("a", "ns")
    assert isinstance(second, dict) and second["data"] == {"v": "5"}


def test_watch_events_add_change_and_remove() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([])
    store.watched("ADDED", owned("a", version="6"))
    store.watched("MODIFIED", owned("a", version="7"))
    found = store.get("a", "ns")
    assert isinstance(found, dict) and found["data"] == {"v": "7"}
    store.watched("DELETED", owned("a", version="8"))
    assert store.get("a", "ns") is UNKNOWN
    assert len(store) == 0


def test_an_own_write_is_kept_only_when_newer_than_what_was_watched() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a", version="10")])
    store.observed("MODIFIED", owned("a", version="9"))   # the watch has delivered a later one
    assert store.get("a", "ns")["data"] == {"v": "10"}  # type: ignore[index]
    store.observed("MODIFIED", owned("a", version="11"))
    assert store.get("a", "ns")["data"] == {"v": "11"}  # type: ignore[index]
    store.observed("MODIFIED", obj("foreign", version="12"))          # outside the scope
    assert store.get("foreign", "ns") is UNKNOWN


def test_a_watched_event_older_than_an_own_write_does_not_take_the_store_back() -> None:
    """Two writes within the watch's lag (a Secret rotated twice, say): the second
    write's answer is held; the watch's event of the first must not replace it."""
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a", version="40")])
    store.observed("MODIFIED", owned("a", version="42"))  # the answer to an own write
    store.watched("MODIFIED", owned("a", version="41"))   # the watch, late
    assert store.get("a", "ns")["data"] == {"v": "42"}  # type: ignore[index]
    store.watched("MODIFIED", owned("a", version="42"))
    store.watched("MODIFIED", owned("a", version="43"))
    assert store.get("a", "ns")["data"] == {"v": "43"}  # type: ignore[index]


def test_an_own_write_answered_before_a_watched_deletion_does_not_bring_it_back() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([])
    store.watched("DELETED", owned("a", version="21"))
    store.observed("MODIFIED", owned("a", version="20"))
    assert store.get("a", "ns") is UNKNOWN
    store.observed("MODIFIED", owned("a", version="22"))   # made again, later
    assert isinstance(store.get("a", "ns"), dict)


def test_a_broken_watch_hands_reads_to_the_api_server_until_listed_again() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a")])
    store.unsynced()
    assert store.list("ns", "managed=op,tenant=shop", "") is UNKNOWN
    store.observed("MODIFIED", owned("b", version="30"))  # nothing to keep it current meanwhile
    store.replace([owned("a")])
    assert store.get("b", "ns") is UNKNOWN


def test_caches_route_by_kind_and_leave_the_rest_to_the_api_server() -> None:
    caches = Caches()
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a")])
    caches.add(store)
    assert len(caches.list("v1", "ConfigMap", "ns", "managed=op,tenant=shop", "")) == 1  # type: ignore[arg-type]
    assert caches.list("v1", "Secret", "ns", "managed=op,tenant=shop", "") is UNKNOWN
    assert caches.get("v1", "Secret", "a", "ns") is UNKNOWN
    caches.written(owned("a", version="6"))
    assert caches.get("v1", "ConfigMap", "a", "ns")["data"] == {"v": "6"}  # type: ignore[index]
    caches.clear()
    assert caches.get("v1", "ConfigMap", "a", "ns") is UNKNOWN


def test_an_event_of_the_other_watch_is_read_at_once_and_never_goes_back() -> None:
    # kopf's watch woke a reconcile with version 41; this store's watch is behind.
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a", version="40")])
    store.observed("MODIFIED", owned("a", version="41"))
    assert store.get("a", "ns")["data"] == {"v": "41"}  # type: ignore[index]
    store.watched("MODIFIED", owned("a", version="41"))  # the store's own, later
    store.observed("MODIFIED", owned("a", version="40"))  # an old event, replayed
    assert store.get("a", "ns")["data"] == {"v": "41"}  # type: ignore[index]
    # A deletion seen by kopf first removes it; an older one does not.
    store.observed("DELETED", owned("a", version="39"))
    assert isinstance(store.get("a", "ns"), dict)
    store.observed("DELETED", owned("a", version="42"))
    assert store.get("a", "ns") is UNKNOWN
    assert store.list("ns", "managed=op,tenant=shop", "") == []


def test_the_indexes_follow_deletions_and_replacements() -> None:
    store = Store("stackforge.io/v1alpha1", "StackForgeTenant")
    store.replace([obj("shop", "a"), obj("shop", "b")])
    store.watched("DELETED", obj("shop", "a", version="6"))
    assert [o["metadata"]["namespace"]
            for o in answered(store.list(None, "", "metadata.name=shop"))] == ["b"]
    assert store.list("a", "", "") == []
    store.replace([obj("other", "c")])
    assert store.list(None, "", "metadata.name=shop") == []
    assert len(store) == 1


def test_changes_move_with_what_a_namespace_holds_and_nothing_else() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    assert store.changes("ns") is None  # nothing known before the first LIST
    store.replace([owned("a"), owned("b", namespace="other")])
    start = store.changes("ns")
    store.watched("MODIFIED", owned("b", namespace="other", version="6"))
    store.observed("MODIFIED", owned("a", version="4"))  # older than held: not kept
    store.observed("MODIFIED", obj("foreign", version="9"))  # outside the scope
    assert store.changes("ns") == start
    store.watched("MODIFIED", owned("a", version="6"))
    after_change = store.changes("ns")
    assert after_change != start
    store.observed("MODIFIED", owned("c", version="7"))  # an own write, newer
    assert store.changes("ns") != after_change
    after_write = store.changes("ns")
    store.watched("DELETED", owned("c", version="8"))
    assert store.changes("ns") != after_write


def test_a_namespace_left_with_nothing_is_forgotten_and_its_token_still_moves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts were kept for every namespace ever seen: each drill sandbox and each
    Secret's namespace added one for the operator's life. Now only the newest
    emptied ones are kept, and no token comes back to a value it had while the
    namespace's content changed in between."""
    monkeypatch.setattr(watch_cache, "EMPTIED_KEPT", 10, raising=False)
    store = Store("v1", "Secret", counts_only=True)
    store.replace([])
    never_seen_before = store.changes("sandbox-0")
    for index in range(1000):
        secret = {"metadata": {"name": "s", "namespace": f"sandbox-{index}",
                               "resourceVersion": str(2 * index + 10)}}
        store.watched("ADDED", secret)
        held = store.changes(f"sandbox-{index}")
        store.watched("DELETED", {"metadata": {**secret["metadata"],
                                               "resourceVersion": str(2 * index + 11)}})
        assert store.changes(f"sandbox-{index}") != held
    # Empty, then a Secret, then empty again: not the token it had at first (a
    # reconcile that read the Secret meanwhile would have settled on it).
    assert store.changes("sandbox-0") != never_seen_before
    assert len(store) == 0
    assert len(store._changes) == 0 and len(store._emptied) == 10
    assert store.changes("sandbox-999") != store.changes("sandbox-998")
    before = store.changes("sandbox-1")
    store.watched("ADDED", {"metadata": {"name": "s", "namespace": "sandbox-1",
                                         "resourceVersion": "5000"}})
    assert store.changes("sandbox-1") != before


def test_an_objects_late_answer_after_a_relist_that_saw_it_gone_does_not_bring_it_back(
        ) -> None:
    """The LIST clears the deletions remembered; an apply's answer of the deleted
    object, handled after it, was kept until the next LIST (days, with bookmarks):
    a reconcile that applies only on a difference never made the child again."""
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a", version="5")], "5")
    store.watched("DELETED", owned("a", version="7"))
    store.replace([], "8")  # the watch broke; the new LIST no longer has it
    store.observed("MODIFIED", owned("a", version="6"))  # the late answer of a write
    assert store.holds("a", "ns") is False
    store.observed("ADDED", owned("a", version="9"))  # made anew after the LIST: kept
    assert store.holds("a", "ns") is True


def test_the_deletion_of_an_older_object_does_not_drop_the_one_made_anew() -> None:
    """Made again (its answer written through at 9), then the watch's DELETED of
    the old one (7): the store held nothing until the ADDED came, and a reconcile
    meanwhile listing Secrets made new passwords."""
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a", version="5")], "5")
    store.observed("ADDED", owned("a", version="9"))
    store.watched("DELETED", owned("a", version="7"))
    held = store.get("a", "ns")
    assert isinstance(held, dict) and held["metadata"]["resourceVersion"] == "9"
    store.watched("DELETED", owned("a", version="10"))  # its own deletion: gone
    assert store.holds("a", "ns") is False


def test_a_relist_or_a_broken_watch_changes_every_namespace() -> None:
    """Events may have been missed in between: nothing can be vouched for."""
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([owned("a")])
    before = store.changes("elsewhere")
    store.unsynced()
    assert store.changes("elsewhere") is None
    store.replace([owned("a")])
    assert store.changes("elsewhere") not in (None, before)


def test_a_namespace_object_counts_for_the_namespace_it_names() -> None:
    store = Store("v1", "Namespace")
    namespace: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "ns", "resourceVersion": "3",
                                              "labels": {}}}
    store.replace([namespace])
    before, other = store.changes("ns"), store.changes("other")
    store.watched("MODIFIED", {**namespace, "metadata": {**namespace["metadata"],
                                                          "resourceVersion": "4"}})
    assert store.changes("ns") != before and store.changes("other") == other


def test_caches_vouch_for_a_namespace_only_when_every_store_is_synced() -> None:
    caches = Caches()
    assert caches.changes("ns") is None  # no stores: the operator reads the API server
    configmaps, secrets = Store("v1", "ConfigMap", SCOPE), Store("v1", "Secret", SCOPE)
    caches.add(configmaps)
    caches.add(secrets)
    configmaps.replace([owned("a")])
    assert caches.changes("ns") is None
    secrets.replace([])
    before = caches.changes("ns")
    assert before is not None and caches.changes("ns") == before
    caches.observed("MODIFIED", owned("a", version="6"))
    assert caches.changes("ns") != before


def test_a_counting_store_counts_changes_and_answers_nothing() -> None:
    caches = Caches()
    secrets = Store("v1", "Secret", counts_only=True)
    caches.add(secrets)
    secret: dict[str, Any] = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                              "metadata": {"name": "tls", "namespace": "ns",
                                           "resourceVersion": "3"}}
    secrets.replace([secret])
    before = caches.changes("ns")
    assert secrets.get("tls", "ns") is UNKNOWN and secrets.list("ns", "", "") is UNKNOWN
    assert caches.get("v1", "Secret", "tls", "ns") is UNKNOWN  # reads go to the API server
    caches.observed("MODIFIED", {**secret, "apiVersion": "v1", "kind": "Secret"})
    assert caches.changes("ns") == before  # only its own watch counts
    secrets.watched("MODIFIED", {**secret, "metadata": {**secret["metadata"],
                                                        "resourceVersion": "4"}})
    assert caches.changes("ns") != before


def test_a_crd_counts_for_every_namespace_and_says_whether_it_exists() -> None:
    """An add-on installed changes what every tenant's reconcile makes."""
    caches = Caches()
    crds = Store("apiextensions.k8s.io/v1", "CustomResourceDefinition", counts_only=True,
                 counts_everywhere=True)
    caches.add(crds)
    name = "certificates.cert-manager.io"
    assert caches.holds(crds.api_version, crds.kind, name, None) is None  # not synced
    crds.replace([])
    before = {ns: caches.changes(ns) for ns in ("tenant-a", "tenant-b")}
    assert caches.holds(crds.api_version, crds.kind, name, None) is False
    crds.watched("ADDED", {"metadata": {"name": name, "resourceVersion": "9"}})
    assert all(caches.changes(ns) != before[ns] for ns in before)
    assert caches.holds(crds.api_version, crds.kind, name, None) is True
    assert caches.holds("v1", "Secret", "x", "ns") is None  # no store of the kind


def test_every_change_to_the_counts_is_told_with_its_namespace() -> None:
    told: list[str | None] = []
    caches = Caches()
    caches.listen(told.append)
    store = Store("v1", "ConfigMap", SCOPE)
    caches.add(store)  # added after listen: told as well
    store.replace([owned("a")])
    assert told == [None]  # a LIST: any namespace may have changed
    store.watched("MODIFIED", owned("a", version="6"))
    store.watched("DELETED", owned("gone", namespace="other", version="7"))  # never held
    store.watched("DELETED", owned("a", version="8"))
    assert told == [None, "ns", "ns"]
    caches.written(owned("b", namespace="ns2", version="9"))
    caches.written(owned("b", namespace="ns2", version="9"))  # the same again: no change
    caches.observed("MODIFIED", owned("a", version="3"))  # older than its deletion
    assert told == [None, "ns", "ns", "ns2"]
    spaces = Store("v1", "Namespace")
    crds = Store("apiextensions.k8s.io/v1", "CustomResourceDefinition", counts_only=True,
                 counts_everywhere=True)
    caches.add(spaces)
    caches.add(crds)
    spaces.watched("ADDED", {"metadata": {"name": "tenant-x", "resourceVersion": "10"}})
    crds.watched("ADDED", {"metadata": {"name": "x.example.com", "resourceVersion": "11"}})
    # A cluster-wide kind's change seen: every namespace, but not a LIST's None.
    assert told[-2:] == ["tenant-x", EVERY_NAMESPACE]
    caches.listen(None)
    store.watched("ADDED", owned("c", version="12"))
    assert len(told) == 6


def pod_like(i: int) -> dict[str, Any]:
    """An object of a kind whose objects share most of their text, as pods do."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"postgres-{i}", "namespace": f"tenant-{i:05d}",
                         "resourceVersion": str(1000 + i),
                         "labels": {"managed": "op", "tenant": f"t{i:05d}"},
                         "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
            "spec": {"containers": [{"name": "postgres", "image": "postgres:16",
                                     "terminationMessagePath": "/dev/termination-log",
                                     "imagePullPolicy": "IfNotPresent",
                                     "env": [{"name": f"PGDATA_{k}", "value": f"/data/{k}/{i}"}
                                             for k in range(12)]}],
                     "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                     "schedulerName": "default-scheduler"},
            "status": {"phase": "Running", "podIP": f"10.0.{i // 250}.{i % 250}",
                       "conditions": [{"type": t, "status": "True"}
                                      for t in ("Initialized", "Ready", "ContainersReady")]}}


def without_managed_fields(o: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in o["metadata"].items() if k != "managedFields"}
    return {**o, "metadata": meta}


def test_a_packer_unpacks_what_it_packed_before_and_after_its_dictionary() -> None:
    packer = Packer()
    objects = [pod_like(i) for i in range(60)]
    packed = [packer.pack(o) for o in objects]
    with_dictionary = [p for p in packed if p[1] & 0x20]  # zlib's FDICT flag
    # The first objects (the sample) are packed alone, every later one with it.
    assert 0 < len(with_dictionary) < len(packed)
    assert not packed[0][1] & 0x20 and packed[-1][1] & 0x20
    assert [packer.unpack(p) for p in packed] == [without_managed_fields(o) for o in objects]
    # A private copy each time: changing one read changes no other.
    first = packer.unpack(packed[-1])
    first["spec"]["containers"][0]["image"] = "changed"
    assert packer.unpack(packed[-1])["spec"]["containers"][0]["image"] == "postgres:16"


def test_the_dictionary_makes_later_objects_of_the_kind_far_smaller() -> None:
    packer = Packer()
    for i in range(20):
        packer.pack(pod_like(i))
    later = pod_like(500)
    alone = Packer().pack(later)  # a new packer's first object: no dictionary
    with_dictionary = packer.pack(later)
    assert len(with_dictionary) * 3 < len(alone), (len(with_dictionary), len(alone))


def test_a_packer_refuses_what_another_packer_packed_with_its_dictionary() -> None:
    one, other = Packer(), Packer()
    for i in range(20):
        one.pack(pod_like(i))
        other.pack(pod_like(i + 100))
    with pytest.raises(zlib.error):
        other.unpack(one.pack(pod_like(7)))
    with pytest.raises(ValueError, match="dictionary"):
        Packer().unpack(one.pack(pod_like(7)))


def test_threads_packing_at_once_make_one_dictionary_and_every_object_unpacks() -> None:
    packer = Packer()
    packed: dict[int, bytes] = {}
    start = threading.Barrier(4)

    def pack_some(first: int) -> None:
        start.wait()
        for i in range(first, first + 50):
            packed[i] = packer.pack(pod_like(i))

    threads = [threading.Thread(target=pack_some, args=(n * 50,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(packer.unpack(p) == without_managed_fields(pod_like(i)) for i, p in packed.items())


def test_a_list_as_wide_as_the_scope_returns_every_object_and_a_narrower_one_filters() -> None:
    store = Store("v1", "ConfigMap", SCOPE)
    store.replace([obj("a", managed="op", tenant="shop", part="db"),
                   obj("b", managed="op", tenant="shop", part="cache"),
                   obj("c", managed="op", tenant="other")])
    wide = answered(store.list("ns", "managed=op,tenant", ""))
    assert sorted(o["metadata"]["name"] for o in wide) == ["a", "b", "c"]
    narrow = answered(store.list("ns", "managed=op,tenant,part=db", ""))
    assert [o["metadata"]["name"] for o in narrow] == ["a"]
    assert [o["metadata"]["labels"] for o in narrow] == [{"managed": "op", "tenant": "shop",
                                                           "part": "db"}]


def test_deletions_are_remembered_within_a_bound_and_not_at_all_by_a_counting_store() -> None:
    """Only a LIST cleared them, and with bookmarks one may not come for days:
    every backup Job, pod and Secret deleted anywhere added one for good."""
    from stackforge_operator.watch_cache import TOMBSTONES_KEPT

    store = Store("v1", "ConfigMap", SCOPE)
    counting = Store("v1", "Secret", "", counts_only=True)
    store.replace([])
    counting.replace([])
    for n in range(TOMBSTONES_KEPT + 500):
        for each in (store, counting):
            each.watched("ADDED", owned(f"job-{n}", version=str(2 * n + 1)))
            each.watched("DELETED", owned(f"job-{n}", version=str(2 * n + 2)))
    assert len(store._deleted) == TOMBSTONES_KEPT
    assert counting._deleted == {}
    # The newest are the ones kept: a late write-through of one still stays out.
    last = TOMBSTONES_KEPT + 499
    store.observed("MODIFIED", owned(f"job-{last}", version=str(2 * last + 1)))
    assert store.get(f"job-{last}", "ns") is UNKNOWN


def test_a_removed_store_no_longer_holds_back_the_tokens_and_every_tenant_is_told() -> None:
    """An add-on's store whose kind is gone never syncs again: kept, no tenant's
    token would ever be known (cached_kinds.py removes it)."""
    caches = Caches()
    told: list[str | None] = []
    caches.listen(told.append)
    configmaps = Store("v1", "ConfigMap", SCOPE)
    monitors = Store("monitoring.coreos.com/v1", "ServiceMonitor", SCOPE)
    counted = Store("v1", "Secret", counts_only=True)
    for store in (configmaps, monitors, counted):
        caches.add(store)
    configmaps.replace([owned("a")])
    counted.replace([])
    assert caches.changes("ns") is None  # the monitors' store never listed
    told.clear()
    caches.remove(monitors)
    assert told == [None]
    assert caches.changes("ns") is not None
    assert caches.stores() == [configmaps, counted]
    assert caches.list("monitoring.coreos.com/v1", "ServiceMonitor", "ns", SCOPE, "") is UNKNOWN
    # Its informer may still deliver an event before its thread ends: nobody is told.
    monitors.replace([owned("m")])
    assert told == [None]
    caches.remove(counted)
    assert caches.stores() == [configmaps]
