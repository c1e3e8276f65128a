"""The tenant reconcile's view: status just computed + BackupPolicies -> what to remember
and what to send; the second time around, nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.drill import Verdict
from stackforge_operator.models.tenant import (
    LastDrillSummary,
    NotificationsSpec,
    StackForgeTenantStatus,
    WebhookChannel,
)
from stackforge_operator.notify.changes import State
from stackforge_operator.reconcile.tenant_notify import farewell, review

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SPEC = NotificationsSpec(webhooks=[WebhookChannel(
    name="ops", url_secret_ref=SecretKeyRef(name="alerts", key="url"))])


def policy(name: str, succeeded: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"conditions": [{
        "type": "LastBackupSucceeded", "status": succeeded, "reason": "PgDumpFailed",
        "message": "run r1: permission denied", "observedGeneration": 1,
        "lastTransitionTime": (NOW - timedelta(hours=1)).isoformat()}]}}


def test_opened_once_then_quiet_then_resolved() -> None:
    failing = StackForgeTenantStatus(last_drill=LastDrillSummary(
        drill="monthly", run_id="r1", verdict=Verdict.FAILED, completion_time=NOW))
    remember, send = review(failing, [], [policy("nightly", "False")], SPEC, NOW)
    assert [(c.key, c.state) for c in send] == [("BackupFailed/nightly", State.OPENED),
                                                ("DrillFailed/monthly", State.OPENED)]
    again, quiet = review(failing, remember, [policy("nightly", "False")], SPEC,
                          NOW + timedelta(minutes=5))
    assert quiet == [] and again == remember
    healthy = StackForgeTenantStatus()
    gone, resolved = review(healthy, remember, [policy("nightly", "True")], SPEC, NOW)
    assert gone == [] and {c.state for c in resolved} == {State.RESOLVED}


def test_no_channels_no_incidents() -> None:
    assert review(StackForgeTenantStatus(), [], [policy("nightly", "False")], None, NOW) == (
        [], [])


def _deleted(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "acme", "namespace": "tenant-acme"}, "spec": spec,
            "status": {"incidents": [{"key": "TenantIsolated", "event": "TenantIsolated",
                                      "since": NOW.isoformat()}]}}


def test_a_deleted_tenant_without_channels_or_with_a_bad_spec_sends_nothing() -> None:
    # Neither reads a Secret (there is no cluster here): nothing to send to.
    assert farewell(_deleted({"tier": "Starter"}), NOW) == []
    assert farewell(_deleted({"tier": "Gold"}), NOW) == []


def test_recorded_tells_whether_a_lost_status_write_had_landed() -> None:
    """After a status write whose answer was lost, the tenant read back says whether
    the incidents it recorded are there (then their messages must go out)."""
    from stackforge_operator.models.tenant import OpenIncident
    from stackforge_operator.reconcile.tenant_notify import recorded

    opened = OpenIncident(key="TenantIsolated", event="TenantIsolated", since=NOW)
    written = {"status": {"incidents": [opened.model_dump(mode="json", by_alias=True)]}}
    assert recorded(written, [opened])
    assert not recorded({"status": {}}, [opened])  # the write never landed
    assert recorded({"status": {}}, [])  # a resolution that landed
    assert not recorded(written, [])
    later = opened.model_copy(update={"since": NOW + timedelta(minutes=1)})
    assert not recorded(written, [later])
