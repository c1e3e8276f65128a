"""Physical backups: which one is due, what the repository holds, the PhysicalBackups condition.

The operator asks the primary's archiver for a backup with an annotation on
the pod (builders/archiving.py) and learns the result from the bucket alone:
pgBackRest writes a backup's ``backup.manifest`` last, so a label directory
with one is a complete backup, and expiry removes the directories of what it
no longer keeps. Label names and object times are not encrypted by the
repository cipher, so the operator needs no passphrase to read them.

A listing with a delimiter reads one key per backup (never their files), and
each backup's manifest is looked at once: a backup already in the status is
taken from there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stackforge_operator import schedule, status
from stackforge_operator.backup.store import missing_object
from stackforge_operator.builders import archiving
from stackforge_operator.builders.archiving import BackupRequest
from stackforge_operator.models import conditions as types
from stackforge_operator.models.backup import (
    ArchiveStatus,
    PhysicalBackup,
    PhysicalBackupRequest,
    PhysicalBackups,
    PhysicalBackupType,
    RecoverabilityWindow,
)
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.reconcile.archive_status import allowed_age, list_pages

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# <full start>F, or <full start>F_<start>D|I; times as the archiver's clock
# (UTC: the image sets no other zone) names them.
_LABEL_RE = re.compile(r"^(\d{8}-\d{6})F(?:_(\d{8}-\d{6})([DI]))?$")
_LABEL_TIME = "%Y%m%d-%H%M%S"
_TYPES = {"D": PhysicalBackupType.DIFFERENTIAL, "I": PhysicalBackupType.INCREMENTAL}
# What a backup of a type stands in for: a full one is also the newest
# differential and incremental, a differential one the newest incremental.
_RANK = {PhysicalBackupType.FULL: 3, PhysicalBackupType.DIFFERENTIAL: 2,
         PhysicalBackupType.INCREMENTAL: 1}
MANIFEST = "backup.manifest"


def parse_label(label: str) -> tuple[PhysicalBackupType, datetime] | None:
    """A label's type and start time (None: not a backup's label)."""
    match = _LABEL_RE.match(label)
    if match is None:
        return None
    started = match.group(2) or match.group(1)
    kind = _TYPES[match.group(3)] if match.group(3) else PhysicalBackupType.FULL
    return kind, datetime.strptime(started, _LABEL_TIME).replace(tzinfo=UTC)


def backup_prefix(repository_path: str, stanza: str) -> str:
    return f"{repository_path.strip('/')}/backup/{stanza}/"


def read(client: S3Client, bucket: str, repository_path: str, stanza: str,
         known: Sequence[PhysicalBackup]) -> list[PhysicalBackup]:
    """The complete backups of the repository, oldest first. Raises the client's errors."""
    prefix = backup_prefix(repository_path, stanza)
    seen = {b.label: b for b in known}
    found: list[PhysicalBackup] = []
    for page in list_pages(client, Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes") or []:
            label = str(common["Prefix"])[len(prefix):].rstrip("/")
            parsed = parse_label(label)
            if parsed is None:
                continue  # backup.history/ and the like
            if label in seen:
                found.append(seen[label])
                continue
            head = _manifest(client, bucket, f"{prefix}{label}/{MANIFEST}")
            if head is None:
                continue  # still running, or interrupted: not a backup
            found.append(PhysicalBackup(label=label, type=parsed[0], start_time=parsed[1],
                                        stop_time=head["LastModified"].astimezone(UTC)))
    ordered = sorted(found, key=lambda b: (b.start_time or b.stop_time, b.label))
    # pgBackRest's expiry, oldest first, deletes a backup's manifest before its
    # files: one interrupted (its pod stopped) leaves a folder that restores
    # nothing, and the window would start at it. The oldest known one is looked
    # at again (one request a pass); the newer ones are newer than any expiry.
    while ordered and ordered[0].label in seen and _manifest(
            client, bucket, f"{prefix}{ordered[0].label}/{MANIFEST}") is None:
        ordered.pop(0)
    return ordered


def _manifest(client: S3Client, bucket: str, key: str) -> Mapping[str, Any] | None:
    """The manifest's HEAD answer, or None when it is not there."""
    try:
        head: Mapping[str, Any] = client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if missing_object(error):
            return None
        raise
    return head


@dataclass(frozen=True)
class Due:
    """A backup that a schedule asks for; ``fired`` is None when it is due
    whatever the schedules say (the repository has no full backup)."""

    type: PhysicalBackupType
    fired: datetime | None


def schedules(spec: PhysicalBackups) -> list[tuple[PhysicalBackupType, str, str]]:
    """The schedules set, the biggest kind first: (kind, field name, expression)."""
    return [(kind, field, expression) for kind, field, expression in (
        (PhysicalBackupType.FULL, "fullSchedule", spec.full_schedule),
        (PhysicalBackupType.DIFFERENTIAL, "differentialSchedule", spec.differential_schedule),
        (PhysicalBackupType.INCREMENTAL, "incrementalSchedule", spec.incremental_schedule))
        if expression is not None]


def due(spec: PhysicalBackups, zone: str, now: datetime,
        backups: Sequence[PhysicalBackup]) -> Due | None:
    """The backup due now, the biggest kind first (None: every schedule is satisfied).

    A fire time is satisfied by a backup of at least its kind finished since."""
    if not any(b.type == PhysicalBackupType.FULL for b in backups):
        return Due(PhysicalBackupType.FULL, None)
    for kind, _, expression in schedules(spec):
        fired = schedule.previous_distinct_fire(expression, zone, now)
        if not any(_RANK[b.type] >= _RANK[kind] and b.stop_time >= fired for b in backups):
            return Due(kind, fired)
    return None


def satisfied(request: BackupRequest, backups: Sequence[PhysicalBackup]) -> bool:
    """Whether a backup finished since the request (pgBackRest may have made a
    full one of a differential: any kind will do)."""
    return any(b.stop_time >= request.requested_at for b in backups)


@dataclass(frozen=True)
class Plan:
    """What the primary pod's request annotation should hold, and what is awaited."""

    request: BackupRequest | None  # None: no annotation
    pending: BackupRequest | None


def plan(spec: PhysicalBackups, zone: str, now: datetime, backups: Sequence[PhysicalBackup],
         current: BackupRequest | None) -> Plan:
    """The next request, given the one the primary has (``current``)."""
    outstanding = current if current is not None and not satisfied(current, backups) else None
    wanted = due(spec, zone, now, backups)
    if wanted is None:
        return Plan(outstanding, outstanding)
    if outstanding is not None and (
            wanted.fired is None or wanted.fired <= outstanding.requested_at):
        # The request out there covers it. A later fire replaces a request that
        # never completed (the archiver takes it once it is free); its id, the
        # time to the second, differs: fires are whole minutes, after the old one.
        return Plan(outstanding, outstanding)
    request = archiving.backup_request(now, wanted.type, spec.retention)
    return Plan(request, request)


def window(backups: Sequence[PhysicalBackup], archive: ArchiveStatus | None,
           archive_timeout_seconds: int) -> RecoverabilityWindow | None:
    """From the end of the oldest backup to a moment a commit later than which is archived.

    The primary's ``archivedThrough`` says it exactly: the time of a heartbeat
    whose commit is in a segment PostgreSQL has archived (never later than the
    newest segment's arrival, which comes after it). Without it (a primary not
    read yet), a timeout before the newest segment reached the bucket: that
    holds while the archive keeps up (the heartbeat commits twice per
    timeout), not while a queue drains after an outage, when segments arrive
    long after they were written."""
    if not backups or archive is None or archive.last_archived_time is None:
        return None
    first = min(b.stop_time for b in backups)
    if archive.archived_through is not None:
        last = min(archive.archived_through, archive.last_archived_time)
    else:
        last = archive.last_archived_time - timedelta(seconds=archive_timeout_seconds)
    return RecoverabilityWindow(first_point=first, last_point=max(first, last))


def freshness(archive: ArchiveStatus | None, archive_timeout_seconds: int,
              now: datetime, primary_reported: bool = True) -> status.Observation | None:
    """BackupFresh as an RPO check, for a policy with a recoverability window:
    what a restore would lose is what came after the last archived point, so
    that point must be as young as archiving promises (None: nothing archived).
    ``primary_reported``: whether ``archivedThrough`` was read from the primary
    just now, or kept from an earlier read (its exporter unreadable, or not
    knowing after a restart)."""
    if archive is None or archive.last_archived_time is None:
        return None
    age = now - archive.last_archived_time
    allowed = allowed_age(archive_timeout_seconds)
    # Times, not ages: an age in the message rewrote the status at every pass.
    message = (f"the last archived point is {archive.last_archived_time.isoformat()} "
               f"(allowed: {int(allowed.total_seconds())}s old)")
    within = age <= allowed
    if within and archive.archived_through is not None:
        # A queue draining after an outage: segments arrive, but old ones.
        # In step, the newest archived heartbeat is at most about two timeouts
        # old (a beat every half timeout, in a segment closed up to a timeout
        # later, pushed within the margin).
        behind = now - archive.archived_through
        reach = allowed + timedelta(seconds=archive_timeout_seconds)
        if behind > reach:
            # Either way no restore can be promised a later point (the window
            # ends there too); the message says which it is.
            within = False
            cause = ("its archive queue is draining" if primary_reported else
                     "it has reported nothing since (its exporter unreadable, or not knowing "
                     "after a restart), so no later point can be confirmed")
            message = (f"the primary has archived up to {archive.archived_through.isoformat()} "
                       f"(allowed: {int(reach.total_seconds())}s behind): {cause}")
    return status.Observation(
        types.BACKUP_FRESH, ConditionStatus.TRUE if within else ConditionStatus.FALSE,
        "WithinRPO" if within else "RPOExceeded", message)


def waiting_since(previous: PhysicalBackupRequest | None, pending: BackupRequest | None,
                  backups: Sequence[PhysicalBackup]) -> datetime | None:
    """When the oldest unanswered request was asked (None: none is pending).

    Each fire of a schedule replaces a request that never completed with one
    stamped now: timed from the newest, a backup failing for ever stayed within
    its deadline whenever a schedule fired more often than the deadline."""
    if pending is None:
        return None
    first = previous.waiting_since if previous is not None else None
    if first is None or any(b.stop_time >= first for b in backups):
        return pending.requested_at  # nothing older waits: answered since, or the first
    return min(first, pending.requested_at)


def answered(request_value: str | None, backups: Sequence[PhysicalBackup]) -> str | None:
    """The request on the pod (its annotation's value) when a backup answered
    it: pgBackRest then expired by the retention it carried. One handed and not
    answered yet says nothing of the repository (judged by it, an old failure
    would look mended until its backup is in)."""
    request = archiving.parse_request(request_value)
    return request_value if request is not None and satisfied(request, backups) else None


# pgBackRest expires right after each backup; a listing taken meanwhile still
# shows what goes. Past this, what should have gone and is there was not expired.
EXPIRY_GRACE = timedelta(minutes=15)


def unexpired(last_request: str | None, backups: Sequence[PhysicalBackup],
              now: datetime) -> list[PhysicalBackup]:
    """The full backups pgBackRest's expiry, by the retention ``last_request``
    carried, should have removed after the newest backup and did not (its
    failure is otherwise only in the archiver's log, while the repository grows).

    Judged only once the newest backup answers that request (an older one was
    expired by an older retention) and is EXPIRY_GRACE old. Count: the newest N
    full backups stay. Time: the full backups complete within N days of the
    newest backup stay, and the newest one before them (a day more is allowed
    for how pgBackRest counts days)."""
    request = archiving.parse_request(last_request)
    if request is None or not backups:
        return []
    newest = max(b.stop_time for b in backups)
    if newest < request.requested_at or now - newest < EXPIRY_GRACE:
        return []
    return _expired_fulls(backups, request.retention_type, request.retention, newest,
                          days_allowed=1)


def _expired_fulls(backups: Sequence[PhysicalBackup], retention_type: str, retention: int,
                   newest: datetime, *, days_allowed: int) -> list[PhysicalBackup]:
    """The full backups a retention leaves out once ``newest`` is the newest backup.
    Count: all but the newest N. Time: those older than N days (± ``days_allowed``,
    for how pgBackRest counts days), but for the newest of them, which the window's
    start needs."""
    fulls = sorted((b for b in backups if b.type is PhysicalBackupType.FULL),
                   key=lambda b: b.stop_time)
    if retention_type == "count":
        return fulls[:-retention] if len(fulls) > retention else []
    before = newest - timedelta(days=retention + days_allowed)
    older = [b for b in fulls if b.stop_time < before]
    return older[:-1]


def needed_full(backups: Sequence[PhysicalBackup],
                target: datetime | None) -> PhysicalBackup | None:
    """The full backup a restore to ``target`` (None: the latest) starts from:
    pgBackRest restores the newest backup complete by the target, and a
    differential or incremental one needs the full backup before it."""
    chosen = max((b for b in backups if target is None or b.stop_time <= target),
                 key=lambda b: b.stop_time, default=None)
    if chosen is None:
        return None
    return max((b for b in backups if b.type is PhysicalBackupType.FULL
                and b.stop_time <= chosen.stop_time), key=lambda b: b.stop_time, default=None)


def expired_by(request: BackupRequest, backups: Sequence[PhysicalBackup],
               target: datetime | None, now: datetime) -> PhysicalBackup | None:
    """The full backup a restore to ``target`` needs when pgBackRest's expiry
    after ``request``'s backup, complete now, removes it; else None. It errs
    towards removing: a day less of a time retention."""
    needed = needed_full(backups, target)
    if needed is None:
        return None
    newest = max(now, *(b.stop_time for b in backups))
    after = list(backups)
    if request.type is PhysicalBackupType.FULL:
        after.append(PhysicalBackup(label="requested", type=PhysicalBackupType.FULL,
                                    stop_time=newest))
    gone = _expired_fulls(after, request.retention_type, request.retention, newest,
                          days_allowed=-1)
    return needed if needed in gone else None


def observation(backups: Sequence[PhysicalBackup], pending: BackupRequest | None,
                pod: str | None, now: datetime, deadline: timedelta,
                since: datetime | None = None,
                stale: Sequence[PhysicalBackup] = ()) -> status.Observation:
    """PhysicalBackups: False once requests waited longer than the policy's deadline,
    counted from ``since`` (waiting_since) when an older one was replaced, or
    when backups the retention removes are still there (``stale``: unexpired)."""
    first = (since or pending.requested_at) if pending is not None else None
    if pending is not None and first is not None and now - first > deadline:
        where = f"pod {pod}" if pod else "the primary"
        older = (f" (backups asked since {first.isoformat()} have not completed)"
                 if first < pending.requested_at else "")
        return status.Observation(
            types.PHYSICAL_BACKUPS, ConditionStatus.FALSE, "BackupOverdue",
            f"the {pending.type.value} backup asked of {where} at "
            f"{pending.requested_at.isoformat()} is not in the repository after "
            f"{_duration(deadline)}{older}; the archiver's log says why "
            f"(kubectl logs {pod or 'postgres-0'} -c {archiving.ARCHIVER_CONTAINER})")
    if not backups:
        if pending is not None:
            return status.Observation(types.PHYSICAL_BACKUPS, ConditionStatus.UNKNOWN,
                                      "FirstBackupRunning",
                                      f"the first full backup was asked of pod {pod} at "
                                      f"{pending.requested_at.isoformat()}")
        return status.Observation(types.PHYSICAL_BACKUPS, ConditionStatus.UNKNOWN,
                                  "WaitingForRepository",
                                  "no backup yet: waiting for the primary and its repository")
    newest = max(backups, key=lambda b: b.stop_time)
    if stale:
        where = pod or "postgres-0"
        return status.Observation(
            types.PHYSICAL_BACKUPS, ConditionStatus.FALSE, "RetentionNotApplied",
            f"{len(stale)} full backups the retention removes after {newest.label} are still "
            f"in the repository ({', '.join(b.label for b in stale[:3])}"
            f"{', ...' if len(stale) > 3 else ''}): pgBackRest's expiry failed, and the "
            f"repository grows; the archiver's log says why "
            f"(kubectl logs {where} -c {archiving.ARCHIVER_CONTAINER})")
    return status.Observation(
        types.PHYSICAL_BACKUPS, ConditionStatus.TRUE, "BackupsCurrent",
        f"{len(backups)} backups; the newest, {newest.label} ({newest.type.value}), was "
        f"complete at {newest.stop_time.isoformat()}")


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds}s"
