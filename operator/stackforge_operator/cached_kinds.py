"""Which kinds the operator reads from watch caches (watch_cache.py), and the
scope each cache holds.

Every kind a converged tenant's reconcile reads: its children (the operator's
label and a tenant label: never every Secret or ConfigMap of the cluster), its
pods (a tenant label), its namespace, and the tenants, policies and drills
(every one: a tenant's name is unique cluster-wide, which the reconcile checks
against all of them).
"""

from __future__ import annotations

import logging

from stackforge_operator import API_GROUP, API_VERSION, config, watch_cache
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
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
PODS_SCOPE = TENANT_LABEL


def operator_stores(*, with_certificates: bool, with_monitoring: bool) -> list[Store]:
    children = [*MANAGED_KINDS, *([CERTIFICATE_KIND] if with_certificates else []),
                *(MONITORING_KINDS if with_monitoring else ())]
    return [
        *(Store(api_version, kind, CHILDREN_SCOPE) for api_version, kind in children),
        Store("v1", "Pod", PODS_SCOPE),
        Store("v1", "Namespace"),
        *(Store(OWN_API, kind) for kind in ("StackForgeTenant", "BackupPolicy", "DRDrill")),
    ]


def start() -> list[Informer]:
    """Fill :data:`watch_cache.CACHES` and keep it current (blocks: a thread's job).

    Reads are answered by the API server until each store's first LIST is in:
    reconciles need not wait for it."""
    if not config.WATCH_CACHES:
        logger.info("watch caches off: every read goes to the API server")
        return []
    informers = []
    for store in operator_stores(
            with_certificates=tenant_observe.cert_manager_installed(),
            with_monitoring=tenant_observe.prometheus_operator_installed()):
        watch_cache.CACHES.add(store)
        informer = Informer(store)
        informer.start()
        informers.append(informer)
    return informers


def stop(informers: list[Informer]) -> None:
    watch_cache.CACHES.clear()
    for informer in informers:
        informer.stop()
