"""An add-on (here the Prometheus Operator's CRDs) removed and installed again while
the operator runs: its kinds' watch caches go and come with it (cached_kinds.py).

Removed, its informer listed a kind that no longer existed every few seconds,
and its store, never synced again, kept every tenant from settling; installed
after the start, its kinds were read from the API server at every reconcile
for as long as the process lived."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import audit, prometheus_operator, tenants
from tests.support.clusters import ClusterHandle
from tests.support.metrics import request_totals
from tests.support.operator_identity import OperatorIdentity
from tests.support.tenants import eventually

NAME = "addons"
NS = f"tenant-{NAME}"
KEY = f"{NS}/{NAME}"
MONITORING = {"servicemonitors", "prometheusrules"}


def _install_prometheus_crds(cluster: ClusterHandle) -> None:
    for path in prometheus_operator.crd_paths():
        cluster.kubectl("apply", "--server-side", "-f", str(path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{n}" for n in prometheus_operator.CRD_NAMES))


@pytest.fixture(scope="module")
def prometheus_crds_first(cluster: ClusterHandle) -> Iterator[None]:
    """Before the module's operator starts: the add-on is installed."""
    _install_prometheus_crds(cluster)
    yield
    cluster.kubectl("delete", "crd", *prometheus_operator.CRD_NAMES, "--ignore-not-found",
                    "--wait=false")


def _service_monitors(cluster: ClusterHandle) -> set[str]:
    found: Any = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        "monitoring.coreos.com", "v1", NS, "servicemonitors")
    return {o["metadata"]["name"] for o in found["items"]}


def _touch_a_secret(cluster: ClusterHandle, value: str) -> None:
    """A change the tenant's inputs token counts: one full reconcile of it."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "unrelated", "namespace": NS}, "stringData": {"v": value}}))


def _settled(operator: OperatorProcess, quiet_seconds: float, timeout: float) -> None:
    """Waits until the tenant's key has not run for ``quiet_seconds`` (resyncs are
    every 3 s here: a settled tenant has no timer)."""
    deadline = time.monotonic() + timeout
    while True:
        looks = tenants.looks_at(operator, KEY)
        time.sleep(quiet_seconds)
        if tenants.looks_at(operator, KEY) == looks:
            return
        assert time.monotonic() < deadline, "the tenant never settled"


class _MonitoringReads:
    """GETs and LISTs of the monitoring kinds since ``mark``: the operator's own, by
    the local control plane's audit log; elsewhere (kind, a kubeconfig), every
    client's by the API server's counters (no other client of the test reads
    them in the windows measured)."""

    def __init__(self, cluster: ClusterHandle, user: str) -> None:
        self._cluster, self._user = cluster, user
        self._offset, self._totals = 0, Counter[tuple[str, str, str]]()

    def mark(self) -> None:
        local = self._cluster.local
        if local is not None:
            self._offset = audit.mark(local.audit_log)
        else:
            self._totals = request_totals(self._cluster)

    def since(self) -> list[str]:
        local = self._cluster.local
        if local is not None:
            return [str(r) for r in audit.reads_since(local.audit_log, self._offset, self._user)
                    if r.resource in MONITORING]
        delta = request_totals(self._cluster) - self._totals
        return [f"{verb} {resource}: {count}" for (verb, resource, _), count in delta.items()
                if resource in MONITORING and verb in ("GET", "LIST") and count]


def test_the_watch_caches_follow_an_addon_removed_and_installed_while_running(
    cluster: ClusterHandle, prometheus_crds_first: None, operator: OperatorProcess,
    operator_identity_installed: OperatorIdentity, cleanup: list[str],
) -> None:
    reads = _MonitoringReads(cluster, operator_identity_installed.username)
    cleanup.append(NAME)
    tenants.apply(cluster, tenants.small_tenant(NAME))
    tenants.wait_condition(cluster, NAME, "Ready", "True")
    eventually(lambda: "postgres" in _service_monitors(cluster) or None, timeout=60)

    # Removed: the stores go, nothing lists the kinds again, the tenant settles.
    cluster.kubectl("delete", "crd", *prometheus_operator.CRD_NAMES, "--wait=true",
                    "--timeout=60s")
    _settled(operator, quiet_seconds=4, timeout=60)
    reads.mark()
    looks = tenants.looks_at(operator, KEY)
    time.sleep(9)  # the informer's backoff is at most 4 s, a resync 3 s
    assert reads.since() == []
    assert tenants.looks_at(operator, KEY) == looks, "the tenant no longer settles"
    # Still reconciled when something it reads changes.
    _touch_a_secret(cluster, "one")
    eventually(lambda: tenants.looks_at(operator, KEY) > looks or None, timeout=15)
    tenants.wait_condition(cluster, NAME, "Ready", "True")

    # Installed again while the operator runs: the tenant gets its monitors at once...
    _install_prometheus_crds(cluster)
    eventually(lambda: "postgres" in _service_monitors(cluster) or None, timeout=60)
    _settled(operator, quiet_seconds=4, timeout=60)
    # ...and its reconciles read them from memory, as every other child.
    reads.mark()
    looks = tenants.looks_at(operator, KEY)
    _touch_a_secret(cluster, "two")
    eventually(lambda: tenants.looks_at(operator, KEY) > looks or None, timeout=15)
    time.sleep(1)
    assert reads.since() == []
