"""What a Physical drill restores, decided before its run starts: or why it cannot start.

A point-in-time restore can only reach the moments its policy's repository
covers (``status.physicalBackups.recoverabilityWindow``). A target before the
window can never be restored: the drill stalls, saying the window. A target
after it is not archived yet: the drill waits for the window to pass it. In
both cases nothing is created, so a drill that could only fail never costs a
sandbox.

The repository is fixed when the run starts (``ActiveDrillRun.repositoryPath``):
a new incarnation of the tenant's database while the run goes on does not move
the restore to another repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from stackforge_operator import status
from stackforge_operator.builders.drill import PhysicalSource
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.models.drill import BackupSelector, BackupSource

LATEST = "latest"


@dataclass(frozen=True)
class Refusal:
    """No run starts: the drill's rollup says why."""

    progress: status.Progress
    reason: str
    message: str


def rfc3339(when: datetime) -> str:
    """UTC with a Z, the fraction kept only when there is one."""
    text = when.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def window_text(first: datetime, last: datetime) -> str:
    return f"{rfc3339(first)} to {rfc3339(last)}"


def physical_source(selector: BackupSelector, policy_name: str, policy: BackupPolicySpec,
                    observed: BackupPolicyStatus) -> PhysicalSource | Refusal:
    """The repository and target of a Physical drill's next run, or why there is none."""
    if policy.continuous_archiving is None or policy.physical_backups is None:
        return Refusal(
            status.Progress.STALLED, "PhysicalBackupsNotConfigured",
            f"spec.backup.method Physical restores pgBackRest backups: BackupPolicy "
            f"{policy_name} needs continuousArchiving and physicalBackups")
    repository = (observed.continuous_archiving.repository_path
                  if observed.continuous_archiving else None)
    window = (observed.physical_backups.recoverability_window
              if observed.physical_backups else None)
    if repository is None or window is None:
        return Refusal(
            status.Progress.RECONCILING, "WaitingForBackup",
            f"BackupPolicy {policy_name} has no physical backup yet; the drill starts "
            "after its first one")
    if selector.source != BackupSource.POINT_IN_TIME or selector.point_in_time is None:
        return PhysicalSource(repository, LATEST)
    target = selector.point_in_time.astimezone(UTC)
    span = window_text(window.first_point, window.last_point)
    if target < window.first_point:
        return Refusal(
            status.Progress.STALLED, "TargetOutsideWindow",
            f"spec.backup.pointInTime {rfc3339(target)} is before the recoverability window "
            f"of BackupPolicy {policy_name} ({span}): no backup restores to it")
    if target > window.last_point:
        return Refusal(
            status.Progress.RECONCILING, "TargetOutsideWindow",
            f"spec.backup.pointInTime {rfc3339(target)} is after the recoverability window "
            f"of BackupPolicy {policy_name} ({span}): the run starts once the WAL past it "
            "is archived")
    return PhysicalSource(repository, rfc3339(target))
