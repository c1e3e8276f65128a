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


def start(on_event: OnEvent | None = None) -> list[Informer]:
    """Fill :data:`watch_cache.CACHES` and keep it current (blocks: a thread's job);
    every change the watches deliver goes to ``on_event`` too.

    Reads are answered by the API server until each store's first LIST is in:
    reconciles need not wait for it."""
    if not config.WATCH_CACHES:
        logger.info("watch caches off: every read goes to the API server")
    informers = []
    for store in operator_stores(
            with_certificates=tenant_observe.cert_manager_installed(),
            with_monitoring=tenant_observe.prometheus_operator_installed(),
            reads=config.WATCH_CACHES):
        watch_cache.CACHES.add(store)
        informer = Informer(store, None if on_event is None else functools.partial(
            on_event, store.kind))
        informer.start()
        informers.append(informer)
    return informers


def stop(informers: list[Informer]) -> None:
    watch_cache.CACHES.clear()
    for informer in informers:
        informer.stop()
