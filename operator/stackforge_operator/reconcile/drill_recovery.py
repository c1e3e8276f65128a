"""What a restore from an archive restores, decided before it starts: or why it cannot start.

For a Physical drill's run and for a tenant created from another's backups
(spec.bootstrap). A point-in-time restore can only reach the moments its
policy's repository covers (``status.physicalBackups.recoverabilityWindow``).
A target before the window can never be restored: it stalls, saying the
window. A target after it is not archived yet: it waits for the window to pass
it. In both cases nothing is created, so a restore that could only fail never
costs a sandbox or a database.

The repository is fixed when the restore starts (a drill's
``activeRun.repositoryPath``, a tenant's ``status.bootstrap``): a new
incarnation of the source's database meanwhile does not move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stackforge_operator import status
from stackforge_operator.builders import archiving
from stackforge_operator.builders.backup import deadline_seconds
from stackforge_operator.builders.common import rfc3339
from stackforge_operator.builders.drill import PhysicalSource
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.reconcile import physical_backups

LATEST = "latest"


@dataclass(frozen=True)
class Refusal:
    """No run starts: the drill's rollup says why."""

    progress: status.Progress
    reason: str
    message: str


def window_text(first: datetime, last: datetime) -> str:
    return f"{rfc3339(first)} to {rfc3339(last)}"


def physical_source(point_in_time: datetime | None, policy_name: str, policy: BackupPolicySpec,
                    observed: BackupPolicyStatus, *, field: str, what: str,
                    now: datetime, waits_for_backups: bool = True) -> PhysicalSource | Refusal:
    """The repository and target of a restore to ``point_in_time`` (None: the latest),
    or why there is none; ``field`` names the time in messages, ``what`` the restore.
    ``waits_for_backups``: whether a restore of the latest waits for a backup under
    way whose expiry removes what it would restore (not an in-place recovery:
    stopping the tenant's writes stops that backup before its expiry)."""
    if policy.continuous_archiving is None or policy.physical_backups is None:
        return Refusal(
            status.Progress.STALLED, "PhysicalBackupsNotConfigured",
            f"{what} restores pgBackRest backups: BackupPolicy "
            f"{policy_name} needs continuousArchiving and physicalBackups")
    repository = (observed.continuous_archiving.repository_path
                  if observed.continuous_archiving else None)
    window = (observed.physical_backups.recoverability_window
              if observed.physical_backups else None)
    if repository is None or window is None:
        return Refusal(
            status.Progress.RECONCILING, "WaitingForBackup",
            f"BackupPolicy {policy_name} has no physical backup yet; {what} starts "
            "after its first one")
    if point_in_time is None:
        if waits_for_backups and (
                waiting := _expiry_under_way(policy_name, policy, observed, what, now)):
            return waiting
        return PhysicalSource(repository, LATEST)
    target = point_in_time.astimezone(UTC)
    span = window_text(window.first_point, window.last_point)
    if target < window.first_point:
        return Refusal(
            status.Progress.STALLED, "TargetOutsideWindow",
            f"{field} {rfc3339(target)} is before the recoverability window "
            f"of BackupPolicy {policy_name} ({span}): no backup restores to it")
    if target > window.last_point:
        return Refusal(
            status.Progress.RECONCILING, "TargetOutsideWindow",
            f"{field} {rfc3339(target)} is after the recoverability window "
            f"of BackupPolicy {policy_name} ({span}): {what} starts once the WAL past it "
            "is archived")
    return PhysicalSource(repository, rfc3339(target))


def _expiry_under_way(policy_name: str, policy: BackupPolicySpec, observed: BackupPolicyStatus,
                      what: str, now: datetime) -> Refusal | None:
    """Why a restore of the latest waits: a backup is under way whose expiry, by
    the policy's retention, removes the full backup it would restore from
    (restore_holds.py); once complete, that backup is the latest. Not a restore
    to a moment: after that backup its full backup is gone for good, so it
    starts at once and may finish first. Not once the backup is overdue: a
    backup that keeps failing must not hold restores, the way out of a
    failure, for ever."""
    physical = observed.physical_backups
    settings = policy.physical_backups
    pending = physical.pending_request if physical is not None else None
    if physical is None or settings is None or pending is None:
        return None
    deadline = timedelta(seconds=deadline_seconds(policy))
    if pending.waiting_since is not None and now - pending.waiting_since > deadline:
        return None
    # The retention the request carries (the policy's may have changed since),
    # read as the archiver reads the request.
    carried = archiving.parse_request(
        f"{pending.id} {pending.type.value} {pending.retention}") if pending.retention else None
    request = carried or archiving.backup_request(now, pending.type, settings.retention)
    removed = physical_backups.expired_by(request, physical.backups, None, now)
    if removed is None:
        return None
    return Refusal(
        status.Progress.RECONCILING, "WaitingForBackup",
        f"a {pending.type.value} backup of BackupPolicy {policy_name} is under way (request "
        f"{pending.id}, pod {pending.pod}), and pgBackRest's expiry after it removes backup "
        f"{removed.label}, which {what} would restore from: {what} starts once that backup "
        "is complete, from it")
