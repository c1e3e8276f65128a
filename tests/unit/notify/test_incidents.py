"""Incident detection from status alone (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stackforge_operator.models.backup import BackupPolicyStatus
from stackforge_operator.models.common import Condition, ConditionStatus
from stackforge_operator.models.drill import Verdict
from stackforge_operator.models.tenant import (
    CertificateStatus,
    EndedRecovery,
    LastDrillSummary,
    NotificationEvent,
    RecoveryPhase,
    RecoveryStatus,
    StackForgeTenantStatus,
)
from stackforge_operator.notify import incidents

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T, F = ConditionStatus.TRUE, ConditionStatus.FALSE
QUARTER = timedelta(minutes=15)


def cond(type_: str, status: ConditionStatus, ago: timedelta = timedelta(0),
         reason: str = "R", message: str = "m") -> Condition:
    return Condition(type=type_, status=status, reason=reason, message=message,
                     last_transition_time=NOW - ago, observed_generation=1)


def test_ready_tenant_is_not_down() -> None:
    assert incidents.down_since([cond("Ready", T), cond("KongReady", T)]) is None


def test_component_outage_counts_from_the_first_failing_component() -> None:
    conditions = [cond("Ready", F, timedelta(hours=2)), cond("KongReady", F, timedelta(minutes=20)),
                  cond("AppsReady", F, timedelta(minutes=16)), cond("BackupHealthy", F)]
    # Ready went False two hours ago for another reason; the outage is 20 min old.
    assert incidents.down_since(conditions) == NOW - timedelta(minutes=20)


def test_failing_backup_alone_is_not_downtime() -> None:
    conditions = [cond("Ready", F, timedelta(hours=1)), cond("KongReady", T),
                  cond("BackupHealthy", F, timedelta(hours=1))]
    assert incidents.down_since(conditions) is None


def test_a_problem_for_a_human_is_downtime() -> None:
    # Stalled on a missing Secret: no component condition says why, Ready does.
    assert incidents.down_since([cond("Ready", F, timedelta(minutes=3))]) == NOW - timedelta(
        minutes=3)


def test_not_ready_opens_only_after_the_threshold() -> None:
    early = [cond("Ready", F, timedelta(minutes=14), "ComponentsNotReady", "KongReady: 0/1")]
    assert incidents.tenant_not_ready(early, NOW, QUARTER) is None
    late = [cond("Ready", F, timedelta(minutes=16), "ComponentsNotReady", "KongReady: 0/1")]
    found = incidents.tenant_not_ready(late, NOW, QUARTER)
    assert found is not None
    assert found.key == "TenantNotReady" and found.event is NotificationEvent.TENANT_NOT_READY
    assert found.since == NOW - timedelta(minutes=16)
    assert "16 min" in found.summary and "KongReady: 0/1" in found.summary


def test_backup_failed_and_stale_per_policy() -> None:
    policy = BackupPolicyStatus(conditions=[
        cond("LastBackupSucceeded", F, timedelta(hours=1), "PgDumpFailed", "run x: denied"),
        cond("BackupFresh", F, timedelta(minutes=5), "Stale", "3 days old"),
    ])
    healthy = BackupPolicyStatus(conditions=[cond("LastBackupSucceeded", T),
                                             cond("BackupFresh", T)])
    found = incidents.detect(StackForgeTenantStatus(), [("nightly", policy), ("ok", healthy)],
                             NOW, not_ready_after=QUARTER)
    assert [(i.key, i.event, i.since) for i in found] == [
        ("BackupFailed/nightly", NotificationEvent.BACKUP_FAILED, NOW - timedelta(hours=1)),
        ("BackupStale/nightly", NotificationEvent.BACKUP_STALE, NOW - timedelta(minutes=5)),
    ]
    assert "run x: denied" in found[0].summary


def test_failing_wal_archiving_is_an_incident_of_its_policy() -> None:
    policy = BackupPolicyStatus(conditions=[
        cond("LastBackupSucceeded", T), cond("BackupFresh", T),
        cond("ContinuousArchiving", F, timedelta(minutes=4), "ArchivingStalled",
             "newest segment 000000010000000000000007 archived 240s ago (allowed: 180s)"),
    ])
    [found] = incidents.backup_incidents("archive", policy)
    assert (found.key, found.event, found.since) == (
        "ArchivingFailed/archive", NotificationEvent.ARCHIVING_FAILED, NOW - timedelta(minutes=4))
    assert "cannot archive WAL" in found.summary and "240s ago" in found.summary
    waiting = BackupPolicyStatus(conditions=[
        cond("ContinuousArchiving", ConditionStatus.UNKNOWN, reason="WaitingForFirstSegment")])
    assert [i.undecided for i in incidents.backup_incidents("archive", waiting)] == [True]


def test_an_overdue_physical_backup_is_a_backup_failure_of_its_own() -> None:
    policy = BackupPolicyStatus(conditions=[
        cond("LastBackupSucceeded", F, timedelta(hours=2), "PgDumpFailed", "denied"),
        cond("PhysicalBackups", F, timedelta(hours=1), "BackupOverdue",
             "the diff backup asked of pod postgres-0 is not in the repository after 6h00m"),
    ])
    dumps, physical = incidents.backup_incidents("archive", policy)
    assert dumps.key == "BackupFailed/archive"
    assert (physical.key, physical.event, physical.since) == (
        "BackupFailed/archive/physical", NotificationEvent.BACKUP_FAILED,
        NOW - timedelta(hours=1))
    assert "a physical backup failed" in physical.summary and "6h00m" in physical.summary


def test_unknown_backup_conditions_are_undecided_incidents() -> None:
    """Neither opened nor resolved by them (changes.diff): the bucket unreadable
    for a moment said "resolved" of stale backups, then "opened" again."""
    policy = BackupPolicyStatus(conditions=[
        cond("LastBackupSucceeded", ConditionStatus.UNKNOWN),
        cond("BackupFresh", ConditionStatus.UNKNOWN, reason="StorageUnavailable"),
        cond("PhysicalBackups", ConditionStatus.UNKNOWN, reason="WaitingForRepository")])
    found = incidents.backup_incidents("nightly", policy)
    assert [(i.key, i.undecided) for i in found] == [
        ("BackupFailed/nightly", True), ("BackupStale/nightly", True),
        ("BackupFailed/nightly/physical", True)]
    healthy = BackupPolicyStatus(conditions=[cond("LastBackupSucceeded", T)])
    assert incidents.backup_incidents("nightly", healthy) == []


def test_failed_drill_is_an_incident_until_a_pass() -> None:
    failed = StackForgeTenantStatus(last_drill=LastDrillSummary(
        drill="monthly", run_id="r1", verdict=Verdict.FAILED, completion_time=NOW))
    found = incidents.drill_incident(failed, NOW)
    assert found is not None and found.key == "DrillFailed/monthly" and found.since == NOW
    passed = StackForgeTenantStatus(last_drill=LastDrillSummary(
        drill="monthly", run_id="r2", verdict=Verdict.PASSED, completion_time=NOW))
    assert incidents.drill_incident(passed, NOW) is None


def test_an_in_place_recovery_is_an_incident_while_it_runs_and_once_it_failed() -> None:
    started = NOW - timedelta(minutes=4)

    def status(phase: RecoveryPhase) -> StackForgeTenantStatus:
        return StackForgeTenantStatus(recovery=RecoveryStatus(
            request="2026-12-01T05:40:00Z", phase=phase, message="why",
            recovery_target="2026-12-01T05:40:00Z", start_time=started,
            completion_time=NOW if phase == RecoveryPhase.FAILED else None))

    for phase in (RecoveryPhase.STOPPING_WRITES, RecoveryPhase.VERIFYING,
                  RecoveryPhase.ROLLING_BACK):
        [running] = incidents.recovery_incidents(status(phase))
        assert running.key == "TenantRecovering/2026-12-01T05:40:00Z"
        assert running.since == started and "the apps are stopped" in running.summary
    [failed] = incidents.recovery_incidents(status(RecoveryPhase.FAILED))
    assert failed.key == "RecoveryFailed/2026-12-01T05:40:00Z" and failed.since == NOW
    assert failed.summary.endswith("failed: why")
    assert incidents.recovery_incidents(status(RecoveryPhase.SUCCEEDED)) == []
    refused = StackForgeTenantStatus(recovery=RecoveryStatus(
        request="yesterday", phase=RecoveryPhase.REFUSED, message="not a time"))
    assert incidents.recovery_incidents(refused) == []
    assert incidents.recovery_incidents(StackForgeTenantStatus()) == []
    # A request refused after the failure starts nothing: the failure stays notified,
    # under the same key (so it is neither resolved nor sent again).
    after_failure = StackForgeTenantStatus(recovery=RecoveryStatus(
        request="yesterday", phase=RecoveryPhase.REFUSED, message="not a time",
        last_ended=EndedRecovery(
            request="2026-12-01T05:40:00Z", phase=RecoveryPhase.FAILED, message="why",
            recovery_target="2026-12-01T05:40:00Z", start_time=started,
            completion_time=NOW)))
    assert incidents.recovery_incidents(after_failure) == [failed]
    after_success = after_failure.model_copy(deep=True)
    assert after_success.recovery is not None and after_success.recovery.last_ended
    after_success.recovery.last_ended.phase = RecoveryPhase.SUCCEEDED
    assert incidents.recovery_incidents(after_success) == []


def test_certificate_under_thirty_days() -> None:
    expiry = NOW + timedelta(days=10)
    status = StackForgeTenantStatus(certificate=CertificateStatus(
        secret_name="shop-tls", not_after=expiry, days_remaining=10))
    found = incidents.certificate_incident(status, 30)
    assert found is not None and found.key == "CertificateExpiring/shop-tls"
    # Stable across reconciles: the moment it entered the 30-day window.
    assert found.since == expiry - timedelta(days=30)
    assert "expires in 10 days" in found.summary
    fine = StackForgeTenantStatus(certificate=CertificateStatus(
        secret_name="shop-tls", not_after=NOW + timedelta(days=31), days_remaining=31))
    assert incidents.certificate_incident(fine, 30) is None


def test_detect_is_stable_and_sorted() -> None:
    status = StackForgeTenantStatus(
        conditions=[cond("Ready", F, timedelta(hours=1)), cond("KongReady", F, timedelta(hours=1))],
        last_drill=LastDrillSummary(drill="d", run_id="r", verdict=Verdict.FAILED,
                                    completion_time=NOW - timedelta(days=1)),
    )
    policy = BackupPolicyStatus(conditions=[cond("LastBackupSucceeded", F, timedelta(hours=3))])
    first = incidents.detect(status, [("p", policy)], NOW, not_ready_after=QUARTER)
    later = incidents.detect(status, [("p", policy)], NOW + timedelta(minutes=1),
                             not_ready_after=QUARTER)
    assert [i.key for i in first] == ["BackupFailed/p", "ComponentDegraded/Kong",
                                      "DrillFailed/d", "TenantNotReady"]
    assert [(i.key, i.since) for i in first] == [(i.key, i.since) for i in later]


def test_component_degraded_after_two_minutes_per_component() -> None:
    conditions = [cond("Ready", F, timedelta(minutes=5)),
                  cond("KongReady", F, timedelta(minutes=3), reason="Unavailable"),
                  cond("AppsReady", F, timedelta(seconds=30)),
                  cond("PostgresReady", ConditionStatus.UNKNOWN, timedelta(minutes=10)),
                  cond("RedisReady", T, timedelta(minutes=10))]
    found = incidents.component_incidents(conditions, NOW, incidents.DEGRADED_AFTER)
    assert [(i.key, i.event) for i in found] == [
        ("ComponentDegraded/Kong", NotificationEvent.COMPONENT_DEGRADED)]
    assert found[0].since == NOW - timedelta(minutes=3)
    assert "Unavailable" in found[0].summary
    # Thirty seconds later the apps have been down long enough too.
    later = incidents.component_incidents(conditions, NOW + timedelta(seconds=90),
                                          incidents.DEGRADED_AFTER)
    assert [i.key for i in later] == ["ComponentDegraded/Kong", "ComponentDegraded/Apps"]


def test_isolation_is_an_incident_while_it_lasts() -> None:
    isolated = [cond("Isolated", T, timedelta(minutes=1), message="spec.isolate is set")]
    found = incidents.isolated_incident(isolated)
    assert found is not None and found.event == NotificationEvent.TENANT_ISOLATED
    assert found.since == NOW - timedelta(minutes=1)
    assert incidents.isolated_incident([cond("Isolated", F)]) is None
    assert incidents.isolated_incident([]) is None


def test_a_full_volume_is_an_incident_at_once_per_component() -> None:
    message = "postgres-0: DiskFull: container postgres stopped: its volume is full"
    conditions = [cond("Ready", F, timedelta(seconds=5)),
                  cond("PostgresReady", F, timedelta(seconds=5), reason="DiskFull",
                       message=message),
                  cond("RedisReady", F, timedelta(minutes=5), reason="CrashLoopBackOff")]
    found = incidents.volume_full_incidents(conditions)
    assert [(i.key, i.event, i.since) for i in found] == [
        ("VolumeFull/Postgres", NotificationEvent.VOLUME_FULL, NOW - timedelta(seconds=5))]
    assert found[0].summary == f"Postgres volume full: {message}"
    assert "VolumeFull/Postgres" in [i.key for i in incidents.detect(
        StackForgeTenantStatus(conditions=conditions), [], NOW, not_ready_after=QUARTER)]
    # Grown and running again: the condition's reason is another one, the incident resolves.
    assert incidents.volume_full_incidents([cond("PostgresReady", T, reason="Ready")]) == []
