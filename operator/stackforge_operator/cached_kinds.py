"""Which kinds the operator reads from watch caches (watch_cache.py), and the
scope each cache holds.

Every kind a converged tenant's reconcile reads: its children (the operator's
label and a tenant label: never every Secret or ConfigMap of the cluster), its
pods (a tenant label), its namespace, and the tenants, policies and drills
(every one: a tenant's name is unique cluster-wide, which the reconcile checks
against all of them). Secrets outside that scope are only counted, from
their metadata: nothing of theirs is held. The operator's Jobs and drill
sandboxes are watched, metadata only, to wake their owners (wakeups.py).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from stackforge_operator import API_GROUP, API_VERSION, config, watch_cache
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.builders.drill import DRILL_LABEL
from stackforge_operator.informer import Informer
from stackforge_operator.reconcile import tenant_observe
from stackforge_operator.reconcile.tenant import (
    CERTIFICATE_KIND,
    MANAGED_KINDS,
    MONITORING_KINDS,
)
from stackforge_operator.watch_cache import Store

logger = logging.getLogger(__name__)

OWN_API = f"{API_GROUP}/{API_VERSION}"
CHILDREN_SCOPE = f"{MANAGED_BY_LABEL}={MANAGED_BY},{TENANT_LABEL}"
OPERATOR_SCOPE = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
SANDBOX_SCOPE = f"{MANAGED_BY_LABEL}={MANAGED_BY},{DRILL_LABEL}"
PODS_SCOPE = TENANT_LABEL


def operator_stores(*, with_certificates: bool, with_monitoring: bool,
                    reads: bool = True) -> list[Store]:
    """``reads``: the stores answer reads; without, every one only counts changes and
    wakes reconciles (``STACKFORGE_WATCH_CACHES=off``: reads go to the API server)."""
    children = [*MANAGED_KINDS, *([CERTIFICATE_KIND] if with_certificates else []),
                *(MONITORING_KINDS if with_monitoring else ())]
    held = [
        *(Store(api_version, kind, CHILDREN_SCOPE) for api_version, kind in children),
        Store("v1", "Pod", PODS_SCOPE),
        Store("v1", "Namespace"),
        *(Store(OWN_API, kind) for kind in ("StackForgeTenant", "BackupPolicy", "DRDrill")),
    ]
    if not reads:
        held = [Store(s.api_version, s.kind, s.label_selector, counts_only=True)
                for s in held if s.api_version != OWN_API]
    return [
        *held,
        # The customer's Secrets a spec names (TLS, notification channels, admin
        # passwords) are read from the API server, never held; their changes still
        # move a settled tenant's inputs token (controller.py): metadata only.
        Store("v1", "Secret", counts_only=True),
        # Only to wake: a policy's backup Jobs, a tenant's restore Jobs, a drill's
        # sandbox Jobs and StatefulSet (wakeups.py); read from the API server.
        Store("batch/v1", "Job", OPERATOR_SCOPE, counts_only=True),
        Store("apps/v1", "StatefulSet", SANDBOX_SCOPE, counts_only=True),
        # Whether an add-on is installed (cert-manager, the Prometheus Operator)
        # changes what every tenant's reconcile makes: a CRD's change moves every
        # token, and tenant_observe.crd_installed reads this store's metadata.
        Store("apiextensions.k8s.io/v1", "CustomResourceDefinition", counts_only=True,
              counts_everywhere=True),
        # Whether the cluster serves the metrics API (metrics-server registers it as
        # an APIService): one registered, or becoming available, moves every token,
        # so measured use is read at once, and while none is registered nobody asks
        # (tenant_observe._pod_metrics).
        Store("apiregistration.k8s.io/v1", "APIService", counts_only=True,
              counts_everywhere=True),
    ]


# Called from an informer's thread: (kind, watch event type, object).
OnEvent = Callable[[str, str, Mapping[str, Any]], None]
# What identifies a store among the operator's: a kind may have two (the drill
# sandboxes' StatefulSets are counted, the tenants' children held).
StoreKey = tuple[str, str, str, bool]
_CRD_KIND = "CustomResourceDefinition"


def _key(store: Store) -> StoreKey:
    return store.api_version, store.kind, store.label_selector, store.counts_only


class CachedKinds:
    """The operator's informers, whose add-on kinds follow the add-ons' CRDs.

    An add-on installed after the operator started gets its stores (its kinds'
    reads were otherwise asked of the API server at every reconcile, for as long
    as the process lived), and one removed loses them: its informer would LIST a
    kind that no longer exists every few seconds, and its store, never synced
    again, would leave every tenant's inputs token unknown, so none would settle.
    The CRDs' own watch says when (each change, and each LIST of it after a
    broken watch, which may hold a CRD added meanwhile).
    """

    def __init__(self, on_event: OnEvent | None) -> None:
        self._on_event = on_event
        self._lock = threading.Lock()
        self._informers: dict[StoreKey, Informer] = {}
        self._addons: tuple[bool, bool] | None = None
        self._stopped = False

    @property
    def informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def follow_addons(self) -> None:
        """Start the informers of the kinds wanted now and stop those no longer
        wanted (blocks while a CRD's presence is asked of the API server)."""
        with self._lock:
            if self._stopped:
                return
            addons = (tenant_observe.cert_manager_installed(),
                      tenant_observe.prometheus_operator_installed())
            if addons == self._addons:
                return
            if self._addons is not None:
                logger.info("add-ons changed (cert-manager %s, Prometheus Operator %s): "
                            "the watch caches follow", *("installed" if a else "absent"
                                                         for a in addons))
            wanted = {_key(s): s for s in operator_stores(
                with_certificates=addons[0], with_monitoring=addons[1],
                reads=config.WATCH_CACHES)}
            for key in [k for k in self._informers if k not in wanted]:
                informer = self._informers.pop(key)
                informer.stop()
                watch_cache.CACHES.remove(informer.store)
            for key, store in wanted.items():
                if key not in self._informers:
                    self._informers[key] = self._start(store)
            # Only once the switch is complete: a failure midway is redone by the
            # next call (each step above looks at what is there).
            self._addons = addons

    def _start(self, store: Store) -> Informer:
        watch_cache.CACHES.add(store)
        if store.kind == _CRD_KIND:
            informer = Informer(store, functools.partial(self._crd_changed, store.kind),
                                on_listed=self.follow_addons)
        else:
            informer = Informer(store, None if self._on_event is None else functools.partial(
                self._on_event, store.kind))
        informer.start()
        return informer

    def _crd_changed(self, kind: str, event_type: str, crd: Mapping[str, Any]) -> None:
        self.follow_addons()
        if self._on_event is not None:
            self._on_event(kind, event_type, crd)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            informers, self._informers = list(self._informers.values()), {}
        watch_cache.CACHES.clear()
        for informer in informers:
            informer.stop()


def start(on_event: OnEvent | None = None) -> CachedKinds:
    """Fill :data:`watch_cache.CACHES` and keep it current (blocks: a thread's job);
    every change the watches deliver goes to ``on_event`` too.

    Reads are answered by the API server until each store's first LIST is in:
    reconciles need not wait for it."""
    if not config.WATCH_CACHES:
        logger.info("watch caches off: every read goes to the API server")
    cached = CachedKinds(on_event)
    cached.follow_addons()
    return cached


def stop(cached: CachedKinds) -> None:
    cached.stop()
