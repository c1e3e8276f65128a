"""When an isolated tenant's evidence is due, and which policy's bucket takes it
(the capture itself: tests/realnode/test_plugin.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.models.tenant import EvidenceStatus, StackForgeTenantStatus
from stackforge_operator.reconcile import tenant_evidence

NOW = datetime(2026, 12, 1, 20, tzinfo=UTC)
WRITTEN = EvidenceStatus(isolated_at=NOW, location="s3://b/k.tar.gz", sha256="0" * 64,
                         files=3, captured_at=NOW)
FAILED = EvidenceStatus(isolated_at=NOW, error="bucket unreachable")


def test_due_when_an_isolation_begins_or_a_while_after_its_capture_failed() -> None:
    not_isolated = StackForgeTenantStatus(isolated=False, evidence=WRITTEN)
    later = NOW + timedelta(seconds=tenant_evidence.RETRY_SECONDS)
    assert tenant_evidence.due(True, not_isolated, NOW)  # a new isolation, an old capture
    assert tenant_evidence.due(True, StackForgeTenantStatus(), NOW)
    failed = StackForgeTenantStatus(isolated=True, evidence=FAILED)
    # Not at the next pass: its write of the failure woke that pass at once, and
    # the tenant was reconciled some fifty times a second while isolated.
    assert not tenant_evidence.due(True, failed, NOW + timedelta(seconds=1))
    assert tenant_evidence.retry_at(FAILED) == later
    assert tenant_evidence.due(True, failed, later)
    assert not tenant_evidence.due(True, StackForgeTenantStatus(isolated=True,
                                                                evidence=WRITTEN), later)
    assert not tenant_evidence.due(False, not_isolated, NOW)
    assert not tenant_evidence.due(False, StackForgeTenantStatus(isolated=True), NOW)


def test_the_first_valid_policy_by_name_takes_it() -> None:
    def policy(name: str, bucket: str | None) -> dict[str, object]:
        spec = {"tenantRef": {"name": "acme"}, "targets": ["Postgres"],
                "retention": {"keepLast": 3}}
        if bucket is not None:
            spec["storage"] = {"bucket": bucket}
        return {"metadata": {"name": name}, "spec": spec}

    chosen = tenant_evidence._policy([policy("zeta", "z-bucket"), policy("alpha", None),
                                      policy("beta", "b-bucket")])
    assert chosen is not None and chosen[0] == "beta"
    assert chosen[1].storage.bucket == "b-bucket"
    assert tenant_evidence._policy([policy("alpha", None)]) is None
