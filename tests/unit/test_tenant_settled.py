"""When a converged tenant's resyncs may be skipped: its inputs token and quiet time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from stackforge_operator import watch_cache
from stackforge_operator.models.tenant import CertificateStatus
from stackforge_operator.reconcile import tenant_settled
from stackforge_operator.usage import usage
from stackforge_operator.watch_cache import Store

NOW = datetime(2026, 12, 2, 8, tzinfo=UTC)


@pytest.fixture
def caches() -> Iterator[Store]:
    store = Store("v1", "ConfigMap")
    watch_cache.CACHES.add(store)
    yield store
    watch_cache.CACHES.clear()


def tenant(version: str) -> dict[str, object]:
    return {"metadata": {"name": "shop", "namespace": "tenant-shop",
                         "resourceVersion": version}}


def configmap(namespace: str, version: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": namespace, "resourceVersion": version}}


def test_the_token_moves_with_the_tenant_and_its_namespace_only(caches: Store) -> None:
    assert tenant_settled.inputs_token(tenant("1")) is None  # not synced yet
    caches.replace([])
    token = tenant_settled.inputs_token(tenant("1"))
    assert token is not None and tenant_settled.inputs_token(tenant("1")) == token
    assert tenant_settled.inputs_token(tenant("2")) != token
    caches.watched("ADDED", configmap("tenant-other", "5"))
    assert tenant_settled.inputs_token(tenant("1")) == token
    caches.watched("ADDED", configmap("tenant-shop", "6"))
    assert tenant_settled.inputs_token(tenant("1")) != token


def test_without_watch_caches_there_is_no_token() -> None:
    assert tenant_settled.inputs_token(tenant("1")) is None


def test_quiet_until_the_first_foreseen_change_at_most_the_longest() -> None:
    assert tenant_settled.quiet_seconds(NOW, [], 600) == 600
    assert tenant_settled.quiet_seconds(NOW, [None, NOW + timedelta(seconds=90)], 600) == 90
    assert tenant_settled.quiet_seconds(NOW, [NOW + timedelta(hours=2)], 600) == 600
    assert tenant_settled.quiet_seconds(NOW, [NOW], 600) is None  # due now: not settled
    assert tenant_settled.quiet_seconds(NOW, [NOW - timedelta(seconds=1)], 600) is None


def test_the_certificate_changes_when_its_whole_days_count_down() -> None:
    not_after = NOW + timedelta(days=40, hours=5)
    days = int((not_after - NOW).total_seconds() // 86400)  # as tenant_observe.certificate
    when = tenant_settled.certificate_changes_at(
        CertificateStatus(secret_name="tls", not_after=not_after, days_remaining=days))
    assert when == NOW + timedelta(hours=5)
    just_after = when + timedelta(seconds=1)
    assert int((not_after - just_after).total_seconds() // 86400) == days - 1
    assert tenant_settled.certificate_changes_at(CertificateStatus(secret_name="tls")) is None
    assert tenant_settled.certificate_changes_at(None) is None


def test_only_measured_use_goes_stale_by_time() -> None:
    measured = usage(None, [], None, NOW)
    assert tenant_settled.usage_stale_at(measured) == NOW + timedelta(seconds=300)
    assert tenant_settled.usage_stale_at(usage(None, None, "no metrics API", NOW)) is None
    assert tenant_settled.usage_stale_at(None) is None


def test_whether_an_add_on_is_installed_is_read_from_the_watched_crds() -> None:
    from stackforge_operator.reconcile import tenant_observe

    crds = Store("apiextensions.k8s.io/v1", "CustomResourceDefinition", counts_only=True,
                 counts_everywhere=True)
    watch_cache.CACHES.add(crds)
    try:
        crds.replace([{"metadata": {"name": "certificates.cert-manager.io",
                                    "resourceVersion": "1"}}])
        # No API server in a unit test: the store alone answers.
        assert tenant_observe.cert_manager_installed() is True
        assert tenant_observe.prometheus_operator_installed() is False
    finally:
        watch_cache.CACHES.clear()
