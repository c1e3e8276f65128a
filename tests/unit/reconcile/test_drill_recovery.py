"""What a Physical drill restores, or why its run does not start.

(The restore itself on running pods: tests/realnode/test_archiving.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackforge_operator import status
from stackforge_operator.builders.common import rfc3339
from stackforge_operator.builders.drill import PhysicalSource
from stackforge_operator.models.backup import (
    BackupPolicySpec,
    BackupPolicyStatus,
    PhysicalBackup,
    PhysicalBackupRequest,
    PhysicalBackupType,
)
from stackforge_operator.reconcile import drill_recovery
from stackforge_operator.reconcile.drill_recovery import Refusal

FIRST = datetime(2026, 11, 30, 1, 5, 12, tzinfo=UTC)
LAST = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
REPOSITORY = "/backups/_pgbackrest/acme/7400000000000000001-20261129T000000Z"
SPAN = "2026-11-30T01:05:12Z to 2026-12-01T09:30:00Z"
NOW = LAST + timedelta(minutes=1)


def _policy(*, archiving: bool = True, physical: bool = True) -> BackupPolicySpec:
    spec: dict[str, Any] = {"tenantRef": {"name": "acme"},
                            "storage": {"bucket": "backups", "prefix": "backups"},
                            "retention": {"keepLast": 7}}
    if archiving:
        spec["continuousArchiving"] = {
            "repositoryCipherSecretRef": {"name": "cipher", "key": "passphrase"}}
    if physical:
        spec["physicalBackups"] = {"fullSchedule": "0 1 * * 0",
                                   "retention": {"fullCount": 2}}
    return BackupPolicySpec.model_validate(spec)


def _status(*, window: bool = True) -> BackupPolicyStatus:
    observed: dict[str, Any] = {"continuousArchiving": {"repositoryPath": REPOSITORY}}
    if window:
        observed["physicalBackups"] = {"recoverabilityWindow": {
            "firstPoint": FIRST.isoformat(), "lastPoint": LAST.isoformat()}}
    return BackupPolicyStatus.model_validate(observed)


def physical_source(point: datetime | None, policy_name: str, policy: BackupPolicySpec,
                    observed: BackupPolicyStatus) -> PhysicalSource | Refusal:
    return drill_recovery.physical_source(point, policy_name, policy, observed,
                                          field="spec.backup.pointInTime", what="the run",
                                          now=NOW)


def test_latest_restores_the_current_repository_to_its_end() -> None:
    assert physical_source(None, "nightly", _policy(), _status()) == (
        PhysicalSource(REPOSITORY, "latest"))


@pytest.mark.parametrize("point", [FIRST, FIRST + timedelta(hours=3), LAST])
def test_a_moment_inside_the_window_is_the_target(point: datetime) -> None:
    chosen = physical_source(point, "nightly", _policy(), _status())
    assert chosen == PhysicalSource(REPOSITORY, rfc3339(point))


def test_a_target_keeps_its_fraction_and_is_given_in_utc() -> None:
    zoned = datetime(2026, 12, 1, 10, 15, 5, 250000, tzinfo=UTC).astimezone(
        datetime.now().astimezone().tzinfo)
    assert rfc3339(zoned) == "2026-12-01T10:15:05.250000Z"
    assert rfc3339(LAST) == "2026-12-01T09:30:00Z"


def test_a_moment_before_the_window_is_refused_for_good_with_the_window() -> None:
    chosen = physical_source(FIRST - timedelta(seconds=1), "nightly", _policy(),
                             _status())
    assert isinstance(chosen, Refusal)
    assert (chosen.progress, chosen.reason) == (status.Progress.STALLED, "TargetOutsideWindow")
    assert ("spec.backup.pointInTime 2026-11-30T01:05:11Z is before the recoverability window"
            in chosen.message)
    assert f"BackupPolicy nightly ({SPAN})" in chosen.message


def test_a_moment_after_the_window_waits_for_the_archive_with_the_window() -> None:
    chosen = physical_source(LAST + timedelta(minutes=2), "nightly", _policy(),
                             _status())
    assert isinstance(chosen, Refusal)
    assert (chosen.progress, chosen.reason) == (status.Progress.RECONCILING,
                                                "TargetOutsideWindow")
    assert "is after the recoverability window" in chosen.message and SPAN in chosen.message


@pytest.mark.parametrize(("archiving", "physical"), [(False, False), (True, False)])
def test_a_policy_without_physical_backups_stalls_the_drill(archiving: bool,
                                                             physical: bool) -> None:
    chosen = physical_source(None, "nightly",
                             _policy(archiving=archiving, physical=physical), _status())
    assert isinstance(chosen, Refusal)
    assert (chosen.progress, chosen.reason) == (status.Progress.STALLED,
                                                "PhysicalBackupsNotConfigured")
    assert "BackupPolicy nightly needs continuousArchiving and physicalBackups" in chosen.message


@pytest.mark.parametrize("observed", [BackupPolicyStatus(), _status(window=False)])
def test_before_the_first_physical_backup_the_drill_waits(observed: BackupPolicyStatus) -> None:
    chosen = physical_source(FIRST, "nightly", _policy(), observed)
    assert isinstance(chosen, Refusal)
    assert (chosen.progress, chosen.reason) == (status.Progress.RECONCILING, "WaitingForBackup")


def _backing_up(kind: str, asked: datetime, *, full_count: int) -> tuple[BackupPolicySpec,
                                                                        BackupPolicyStatus]:
    """A policy whose primary is asked for a ``kind`` backup since ``asked``; the
    repository holds one full backup, ending at FIRST, and a differential one."""
    policy = _policy().model_copy(deep=True)
    assert policy.physical_backups is not None
    policy.physical_backups.retention.full_count = full_count
    observed = _status()
    assert observed.physical_backups is not None
    observed.physical_backups.backups = [
        PhysicalBackup(label="20261130-010000F", type=PhysicalBackupType.FULL, stop_time=FIRST),
        PhysicalBackup(label="20261130-010000F_20261201-010000D",
                       type=PhysicalBackupType.DIFFERENTIAL,
                       stop_time=datetime(2026, 12, 1, 1, 5, tzinfo=UTC))]
    observed.physical_backups.pending_request = PhysicalBackupRequest(
        id=asked.strftime("%Y%m%dT%H%M%SZ"), type=PhysicalBackupType(kind), pod="postgres-0",
        waiting_since=asked)
    return policy, observed


def test_a_restore_of_the_latest_waits_while_a_backup_whose_expiry_removes_its_own_runs() -> None:
    """A new full backup with a count of one expires the full backup a restore
    of the latest starts from, midway through it; complete, it is the latest."""
    policy, observed = _backing_up("full", NOW - timedelta(minutes=10), full_count=1)
    chosen = physical_source(None, "nightly", policy, observed)
    assert isinstance(chosen, Refusal)
    assert (chosen.progress, chosen.reason) == (status.Progress.RECONCILING, "WaitingForBackup")
    assert "a full backup of BackupPolicy nightly is under way" in chosen.message
    assert ("removes backup 20261130-010000F, which the run would restore from: the run "
            "starts once that backup is complete") in chosen.message


def test_the_retention_the_request_carries_is_the_one_its_expiry_goes_by() -> None:
    """The policy's retention raised after the request: the backup under way
    still expires by the count of one it was asked with."""
    policy, observed = _backing_up("full", NOW - timedelta(minutes=10), full_count=3)
    assert observed.physical_backups is not None
    assert observed.physical_backups.pending_request is not None
    observed.physical_backups.pending_request.retention = "count 1"
    chosen = physical_source(None, "nightly", policy, observed)
    assert isinstance(chosen, Refusal) and chosen.reason == "WaitingForBackup"
    observed.physical_backups.pending_request.retention = "count 2"
    assert physical_source(None, "nightly", policy, observed) == PhysicalSource(REPOSITORY,
                                                                                "latest")


def test_a_restore_to_a_moment_or_in_place_starts_beside_such_a_backup() -> None:
    """To a moment, waiting would lose it for good (its full backup goes with the
    expiry); started at once, it may finish first. An in-place recovery stops
    the primary, and the backup with it, before its expiry."""
    policy, observed = _backing_up("full", NOW - timedelta(minutes=10), full_count=1)
    moment = FIRST + timedelta(hours=1)
    assert physical_source(moment, "nightly", policy, observed) == PhysicalSource(
        REPOSITORY, rfc3339(moment))
    assert drill_recovery.physical_source(
        None, "nightly", policy, observed, field="annotation", what="the recovery", now=NOW,
        waits_for_backups=False) == PhysicalSource(REPOSITORY, "latest")


@pytest.mark.parametrize(("kind", "full_count", "asked"), [
    ("full", 2, NOW - timedelta(minutes=10)),  # the full backup stays: a count of two
    ("diff", 1, NOW - timedelta(minutes=10)),  # a differential backup adds no full one
    ("full", 1, NOW - timedelta(hours=7)),  # overdue (6 h): a failing backup holds nothing
])
def test_a_restore_starts_beside_a_backup_whose_expiry_leaves_its_full_backup(
        kind: str, full_count: int, asked: datetime) -> None:
    policy, observed = _backing_up(kind, asked, full_count=full_count)
    assert physical_source(None, "nightly", policy, observed) == PhysicalSource(REPOSITORY,
                                                                                "latest")
