"""The informer's reaction to a watch that expired (410 Gone), which the API
server gives only once its history has been compacted past the watch's version:
not something a test can make it do on demand, so the informer's LIST and WATCH
calls are replaced here by ones that play that sequence. Everything else about
informers runs against the API server (tests/cluster/test_informer.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from stackforge_operator import kube
from stackforge_operator.informer import Informer
from stackforge_operator.watch_cache import UNKNOWN, Store


def _config_map(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "1"}}


def _expire_first_watch(monkeypatch: pytest.MonkeyPatch, list_collection: Any,
                        stop: threading.Event) -> None:
    """The informer's calls replaced: ``list_collection`` answers the LISTs; the
    first WATCH expires (410), later ones wait for ``stop``."""
    watches = 0

    def watch_collection(*_: Any, **__: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
        nonlocal watches
        watches += 1
        if watches == 1:
            raise kube.WatchExpiredError("too old resource version")
        stop.wait(10)
        return iter(())

    monkeypatch.setattr(kube, "watch_client", lambda: None)
    monkeypatch.setattr(kube, "collection_path", lambda *_: "/api/v1/configmaps")
    monkeypatch.setattr(kube, "list_collection", list_collection)
    monkeypatch.setattr(kube, "watch_collection", watch_collection)


def test_a_store_answers_nothing_while_it_lists_again_after_its_watch_expired(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleted while the watch was away, "web" was still answered from the store
    during the new LIST: a reconcile reading it would not make it again."""
    lists = [[_config_map("web")], []]  # "web" is deleted in the gap
    second_list_asked, second_list_may_end = threading.Event(), threading.Event()

    def list_collection(*_: Any, keep: Any, **__: Any) -> tuple[list[Any], str]:
        objects = lists.pop(0)
        if not lists:
            second_list_asked.set()
            assert second_list_may_end.wait(10)
        return [keep(o) for o in objects], "1"

    stop = threading.Event()
    _expire_first_watch(monkeypatch, list_collection, stop)
    store = Store("v1", "ConfigMap", "")
    informer = Informer(store)
    informer.start()
    try:
        assert second_list_asked.wait(10)
        assert not store.synced
        assert store.get("web", "shop") is UNKNOWN
        second_list_may_end.set()
        assert informer.wait_synced(10)
        assert store.list("shop", "", "") == []  # the new LIST's word: "web" is gone
    finally:
        second_list_may_end.set()
        informer.stop()
        stop.set()


def test_each_complete_list_is_told_after_the_store_holds_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A LIST delivers no events: a CRD added while the watch was away is seen only
    by what is told of the LIST (cached_kinds.py starts the add-on's informers)."""
    lists = [[_config_map("web")], [_config_map("web"), _config_map("api")]]
    stop = threading.Event()

    def list_collection(*_: Any, keep: Any, **__: Any) -> tuple[list[Any], str]:
        return [keep(o) for o in lists.pop(0)], "1"

    _expire_first_watch(monkeypatch, list_collection, stop)
    store = Store("v1", "ConfigMap", "")
    held_when_told: list[list[str]] = []
    second = threading.Event()

    def listed() -> None:
        found = store.list("shop", "", "")
        assert isinstance(found, list)
        held_when_told.append(sorted(o["metadata"]["name"] for o in found))
        if len(held_when_told) == 2:
            second.set()

    informer = Informer(store, on_listed=listed)
    informer.start()
    try:
        assert second.wait(10)
        assert held_when_told == [["web"], ["api", "web"]]
    finally:
        informer.stop()
        stop.set()


@pytest.mark.parametrize("watch_fails", ["refused", "ends at once"])
def test_a_watch_failing_again_and_again_backs_off_instead_of_listing_in_a_loop(
        monkeypatch: pytest.MonkeyPatch, watch_fails: str) -> None:
    """Each LIST that succeeded reset the backoff: with every WATCH refused (429 from
    the API server's priority and fairness) each kind was LISTed in full about
    twice a second; with every watch closed at once (a proxy), it was watched
    again without any pause, millions of times a second."""
    watches = 0

    def list_collection(*_: Any, keep: Any, **__: Any) -> tuple[list[Any], str]:
        return [keep(_config_map("web"))], "1"

    def watch_collection(*_: Any, **__: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
        nonlocal watches
        watches += 1
        if watch_fails == "refused":
            raise ApiException(status=429, reason="Too Many Requests")
        return iter(())

    monkeypatch.setattr(kube, "watch_client", lambda: None)
    monkeypatch.setattr(kube, "collection_path", lambda *_: "/api/v1/configmaps")
    monkeypatch.setattr(kube, "list_collection", list_collection)
    monkeypatch.setattr(kube, "watch_collection", watch_collection)
    informer = Informer(Store("v1", "ConfigMap", ""))
    informer.start()
    try:
        time.sleep(4)
    finally:
        informer.stop()
    # Backoffs of 0.5, 1, 2 s (each spread down to half): at most four LISTs in
    # 4 s (the old code: eleven), and a watch for each.
    assert 2 <= informer.lists <= 4, informer.lists
    assert watches <= informer.lists, watches
