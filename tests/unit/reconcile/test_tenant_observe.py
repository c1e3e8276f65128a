"""The pure parts of a tenant's placement rules: which of two colliding tenants keeps its place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stackforge_operator.models.tenant import reserved_namespace
from stackforge_operator.reconcile.tenant_observe import (
    backup_health,
    first_claimant,
    name_claimant,
    namespace_claimant,
    placement_problem,
)


def _tenant(uid: str, created: str, name: str = "acme", namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": name, "namespace": namespace,
                         "creationTimestamp": created}}


def test_an_older_tenant_claims_first() -> None:
    older = _tenant("b", "2026-11-27T08:00:00Z", name="older")
    me = _tenant("a", "2026-11-27T09:00:00Z")["metadata"]
    assert first_claimant(me, [older])["name"] == "older"  # type: ignore[index]


def test_a_younger_tenant_does_not_claim() -> None:
    younger = _tenant("b", "2026-11-27T10:00:00Z")
    me = _tenant("a", "2026-11-27T09:00:00Z")["metadata"]
    assert first_claimant(me, [younger]) is None


def test_a_tenant_never_collides_with_itself() -> None:
    me = _tenant("a", "2026-11-27T09:00:00Z")
    assert first_claimant(me["metadata"], [me]) is None


def test_same_second_the_uid_decides_and_both_sides_agree() -> None:
    # Timestamps have one-second resolution: two tenants made together tie.
    one = _tenant("1111", "2026-11-27T09:00:00Z", name="one")
    two = _tenant("2222", "2026-11-27T09:00:00Z", name="two")
    assert first_claimant(two["metadata"], [one, two])["name"] == "one"  # type: ignore[index]
    assert first_claimant(one["metadata"], [one, two]) is None


def test_the_tenant_the_namespace_was_built_for_keeps_it_against_a_same_second_newcomer(
        ) -> None:
    # The CI case: "first" Ready within the second it was made, "second" applied
    # into its namespace in that same second, with the smaller uid. By age and uid
    # the newcomer wins; the namespace's label says "first" is already there.
    first = _tenant("9999", "2026-12-04T18:43:54Z", name="first")
    second = _tenant("1111", "2026-12-04T18:43:54Z", name="second")
    both = [first, second]
    assert first_claimant(first["metadata"], both)["name"] == "second"  # type: ignore[index]
    assert namespace_claimant(first["metadata"], both, "first") is None
    assert namespace_claimant(second["metadata"], both, "first")["name"] == "first"  # type: ignore[index]
    # Once the holder is gone, the oldest of those left takes over; unlabelled, as before.
    assert namespace_claimant(second["metadata"], [second], "first") is None
    assert namespace_claimant(first["metadata"], both, None)["name"] == "second"  # type: ignore[index]


def test_the_tenant_built_already_keeps_its_name_against_a_same_second_namesake() -> None:
    # The CI case of 35ee0b6: "first" Ready within the second it was made, its
    # namesake applied into tenant-taken in that same second, with the smaller
    # uid. By age and uid the namesake wins; tenant-first's label says "first"
    # was built there.
    built = _tenant("9999", "2026-12-04T19:58:10Z", name="first", namespace="tenant-first")
    newcomer = _tenant("1111", "2026-12-04T19:58:10Z", name="first", namespace="tenant-taken")
    both = [built, newcomer]
    holders = {"tenant-first": "first", "tenant-taken": None}
    assert first_claimant(built["metadata"], both) is not None
    assert name_claimant(built["metadata"], both, holders) is None
    found = name_claimant(newcomer["metadata"], both, holders)
    assert found is not None and found["namespace"] == "tenant-first"
    # Alike (neither built, or both), the older one keeps it, as before.
    for alike in ({}, {"tenant-first": "first", "tenant-taken": "first"}):
        assert name_claimant(built["metadata"], both, alike)["namespace"] == (  # type: ignore[index]
            "tenant-taken")
        assert name_claimant(newcomer["metadata"], both, alike) is None
    # A label for another tenant, or one left by a deleted namesake, is no claim.
    assert name_claimant(built["metadata"], both, {"tenant-first": "other"})[  # type: ignore[index]
        "namespace"] == "tenant-taken"
    assert name_claimant(newcomer["metadata"], [newcomer], holders) is None


def test_the_oldest_of_several_is_named() -> None:
    me = _tenant("z", "2026-11-27T12:00:00Z")["metadata"]
    others = [_tenant("b", "2026-11-27T10:00:00Z", name="middle"),
              _tenant("c", "2026-11-27T08:00:00Z", name="oldest")]
    assert first_claimant(me, others)["name"] == "oldest"  # type: ignore[index]


@pytest.mark.parametrize(("namespace", "reserved"), [
    ("default", True), ("stackforge-system", True), ("kube-system", True), ("kube-public", True),
    ("tenant-acme", False), ("kubeflow", False), ("acme-prod", False),
])
def test_reserved_namespaces(namespace: str, reserved: bool) -> None:
    assert reserved_namespace(namespace) is reserved


def test_a_tenant_in_the_operators_own_namespace_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installed by the chart into another namespace than stackforge-system, the
    operator's pod would fall under the tenant's default-deny policy there."""
    monkeypatch.setenv("POD_NAMESPACE", "platform-ops")
    problem = placement_problem(
        _tenant("u1", "2026-11-27T12:00:00Z", namespace="platform-ops")["metadata"])
    assert problem is not None and problem.reason == "ReservedNamespace"
    assert "platform-ops is the operator's own" in problem.message


def _policy_with(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "archive"}, "status": {"conditions": [
        {"type": t, "status": s, "reason": "R", "message": f"{t} is {s}",
         "lastTransitionTime": "2026-11-30T12:00:00Z"} for t, s in conditions]}}


def test_failing_wal_archiving_makes_the_backups_unhealthy() -> None:
    fresh = [("LastBackupSucceeded", "True"), ("BackupFresh", "True")]
    healthy, _ = backup_health([_policy_with(*fresh, ("ContinuousArchiving", "True"))])
    assert healthy.status == "True"
    failing, _ = backup_health([_policy_with(*fresh, ("ContinuousArchiving", "False"))])
    assert failing.status == "False" and "ContinuousArchiving is False" in failing.message
    # Still waiting for its first segment: not a failure.
    waiting, _ = backup_health([_policy_with(*fresh, ("ContinuousArchiving", "Unknown"))])
    assert waiting.status == "True"


def test_an_overdue_physical_backup_makes_the_backups_unhealthy() -> None:
    fresh = [("LastBackupSucceeded", "True"), ("BackupFresh", "True"),
             ("ContinuousArchiving", "True")]
    healthy, _ = backup_health([_policy_with(*fresh, ("PhysicalBackups", "True"))])
    assert healthy.status == "True"
    failing, _ = backup_health([_policy_with(*fresh, ("PhysicalBackups", "False"))])
    assert failing.status == "False" and "PhysicalBackups is False" in failing.message
    first, _ = backup_health([_policy_with(*fresh, ("PhysicalBackups", "Unknown"))])
    assert first.status == "True"


def test_the_newest_complete_backup_is_the_newest_of_any_policy() -> None:
    """The age metric took the last success of the policy whose run was newest:
    an hourly policy failing for a week hid the nightly's backup of last night."""
    def policy(name: str, last: dict[str, Any], success: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {
            "lastRun": last,
            "lastSuccessfulRun": {"id": f"{name}-ok", "result": "Succeeded",
                                  "completionTime": success}}}

    hourly = policy("hourly", {"id": "h", "result": "Failed",
                               "completionTime": "2026-11-30T12:00:00Z"}, "2026-11-23T12:00:00Z")
    nightly = policy("nightly", {"id": "n", "result": "Succeeded",
                                 "completionTime": "2026-11-30T02:00:00Z"},
                     "2026-11-30T02:00:00Z")
    _, summary = backup_health([hourly, nightly])
    assert summary is not None and (summary.policy, summary.run_id) == ("hourly", "h")
    assert summary.last_success_time == datetime(2026, 11, 30, 2, tzinfo=UTC)


def test_a_stalled_policy_makes_the_backups_unhealthy_though_its_last_backup_was_fresh() -> None:
    """A policy stalled on its spec or Secrets runs nothing and keeps the backup
    conditions it had: the tenant read BackupHealthy True, and Ready, for as long
    as nothing was backed up."""
    fresh = [("LastBackupSucceeded", "True"), ("BackupFresh", "True")]
    stalled, _ = backup_health([_policy_with(*fresh, ("Stalled", "True"))])
    assert stalled.status == "False" and "archive: R: Stalled is True" in stalled.message
    # A policy stalled by a failing backup names that failure once.
    stale, _ = backup_health([_policy_with(("LastBackupSucceeded", "True"),
                                           ("BackupFresh", "False"), ("Stalled", "True"))])
    assert stale.status == "False" and stale.message == "archive: R: BackupFresh is False"
    healthy, _ = backup_health([_policy_with(*fresh, ("Stalled", "False"))])
    assert healthy.status == "True"
    # Its bucket unreadable, the policy says its freshness is Unknown itself: the
    # tenant's BackupHealthy stays Unknown (a False one stalls the tenant).
    unreadable, _ = backup_health([_policy_with(("LastBackupSucceeded", "True"),
                                                ("BackupFresh", "Unknown"), ("Stalled", "True"))])
    assert unreadable.status == "Unknown"
