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
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.reconcile import drill_recovery
from stackforge_operator.reconcile.drill_recovery import Refusal

FIRST = datetime(2026, 11, 30, 1, 5, 12, tzinfo=UTC)
LAST = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
REPOSITORY = "/backups/_pgbackrest/acme/7400000000000000001-20261129T000000Z"
SPAN = "2026-11-30T01:05:12Z to 2026-12-01T09:30:00Z"


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
                                          field="spec.backup.pointInTime", what="the run")


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
