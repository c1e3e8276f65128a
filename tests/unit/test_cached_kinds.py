"""The operator's watch caches follow the add-ons: installed after the start, an
add-on's kinds get stores; removed, they lose them. Informers are replaced by
records here; tests/cluster/test_addons.py runs the same against the API server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pytest

from stackforge_operator import cached_kinds, config, watch_cache
from stackforge_operator.reconcile import tenant_observe
from stackforge_operator.watch_cache import Caches, Store

MONITORS = ("monitoring.coreos.com/v1", "ServiceMonitor")
MONITORS_CRD = {"metadata": {"name": "servicemonitors.monitoring.coreos.com"}}
CERTIFICATES = ("cert-manager.io/v1", "Certificate")


class RecordedInformer:
    made: ClassVar[list[RecordedInformer]] = []

    def __init__(self, store: Store, on_event: Callable[[str, Mapping[str, Any]], None]
                 | None = None, *, on_listed: Callable[[], None] | None = None) -> None:
        self.store, self.on_event, self.on_listed = store, on_event, on_listed
        self.running = False
        RecordedInformer.made.append(self)

    def start(self) -> None:
        self.running = True

    def stop(self, timeout: float = 0.0) -> None:  # noqa: ARG002 - Informer's signature
        self.running = False


@pytest.fixture
def addons(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    installed = {"cert-manager": False, "prometheus": False}
    RecordedInformer.made = []
    monkeypatch.setattr(cached_kinds, "Informer", RecordedInformer)
    monkeypatch.setattr(watch_cache, "CACHES", Caches())
    monkeypatch.setattr(tenant_observe, "cert_manager_installed",
                        lambda: installed["cert-manager"])
    monkeypatch.setattr(tenant_observe, "prometheus_operator_installed",
                        lambda: installed["prometheus"])
    return installed


def _held() -> set[tuple[str, str]]:
    return {(s.api_version, s.kind) for s in watch_cache.CACHES.stores()}


def _running() -> set[tuple[str, str]]:
    return {(i.store.api_version, i.store.kind) for i in RecordedInformer.made if i.running}


def _crd_informer() -> RecordedInformer:
    [found] = [i for i in RecordedInformer.made
               if i.store.kind == "CustomResourceDefinition" and i.running]
    return found


def test_an_addon_installed_later_gets_its_stores_and_one_removed_loses_them(
        addons: dict[str, bool]) -> None:
    woken: list[tuple[str, str]] = []
    told: list[str | None] = []
    watch_cache.CACHES.listen(told.append)
    cached = cached_kinds.start(lambda kind, event, _obj: woken.append((kind, event)))
    assert MONITORS not in _held() and CERTIFICATES not in _held()
    assert _held() == _running()
    started = len(RecordedInformer.made)

    # The CRDs' watch delivers the Prometheus Operator's CRDs.
    addons["prometheus"] = True
    crd_informer = _crd_informer()
    assert crd_informer.on_event is not None
    crd_informer.on_event("ADDED", MONITORS_CRD)
    assert MONITORS in _held() and ("monitoring.coreos.com/v1", "PrometheusRule") in _held()
    assert _held() == _running()
    assert len(RecordedInformer.made) == started + 2  # nothing else started again
    # The owners are still told of the CRD's event.
    assert woken == [("CustomResourceDefinition", "ADDED")]

    # cert-manager's CRD arrives in a LIST after a broken watch: no event, the LIST told.
    addons["cert-manager"] = True
    assert crd_informer.on_listed is not None
    crd_informer.on_listed()
    assert CERTIFICATES in _held() and _held() == _running()

    # The Prometheus Operator is removed: its stores are gone and every token moves.
    addons["prometheus"] = False
    told.clear()
    crd_informer.on_event("DELETED", MONITORS_CRD)
    assert MONITORS not in _held() and CERTIFICATES in _held()
    assert _held() == _running()
    assert None in told

    cached_kinds.stop(cached)
    assert _running() == set() and watch_cache.CACHES.stores() == []
    # A late event after the stop starts nothing.
    addons["prometheus"] = True
    crd_informer.on_event("ADDED", MONITORS_CRD)
    assert _running() == set()


def test_without_reads_the_addons_kinds_are_counted_and_still_follow(
        addons: dict[str, bool], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "WATCH_CACHES", False)
    cached = cached_kinds.start()
    addons["cert-manager"] = True
    crd_informer = _crd_informer()
    assert crd_informer.on_event is not None
    crd_informer.on_event("ADDED", {"metadata": {"name": "certificates.cert-manager.io"}})
    [certificates] = [s for s in watch_cache.CACHES.stores()
                      if (s.api_version, s.kind) == CERTIFICATES]
    assert certificates.counts_only
    cached_kinds.stop(cached)
