"""The WAL archive as the bucket shows it, and the ContinuousArchiving condition.

The bucket is the truth here too: a segment counts as archived when its
object exists. The operator does not ask the database (it holds no
connection to it); the primary's archiver sidecar makes sure a segment is
archived every ``archive_timeout`` while archiving works
(images/postgres/stackforge-archiver.sh), so the newest segment's age is
enough to tell archiving that works from archiving that does not.

How far a restore can reach is another matter: a segment's upload time is
when it reached the bucket, which after an outage of the bucket is long
after it was written. The primary knows better (its archiver sidecar records
which segment holds each heartbeat, and PostgreSQL which segments it has
archived): its exporter's figure, ``archivedThrough``, bounds the
recoverability window (reconcile/physical_backups.py).

Listing stays cheap however long the archive grows: only the newest
incarnation's directory is read (the newest by the time its name ends
with: a clone keeps its source's system identifier, so names alone do not
sort by age), and from the last segment seen on (``StartAfter``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from stackforge_operator import config, status
from stackforge_operator.builders import archiving
from stackforge_operator.builders.exporters import ARCHIVED_THROUGH_SAMPLE, INCARNATION_SAMPLE
from stackforge_operator.models import conditions as types
from stackforge_operator.models.backup import ArchiveStatus, ObjectStorage
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.replication import SERVER_CONTAINER

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# pgBackRest's name for an archived segment: the segment, its SHA-1, an
# optional compression extension.
_SEGMENT_RE = re.compile(r"^([0-9A-F]{24})-[0-9a-f]{40}(\.[a-z0-9]+)?$")
# A primary that restarts to take archive_mode, then creates its stanza.
STARTUP_GRACE = timedelta(minutes=5)
# pgBackRest pushes in the background; a slow bucket may take this long.
PUSH_MARGIN = timedelta(seconds=config.ARCHIVE_MARGIN_SECONDS)


def allowed_age(archive_timeout_seconds: int) -> timedelta:
    """How old the newest archived segment may be while archiving works: the
    server closes a segment at every archive_timeout that saw a WAL record, and
    the archiver writes one twice per timeout (builders/archiving.py)."""
    return timedelta(seconds=archive_timeout_seconds) + PUSH_MARGIN


def _segment(key: str) -> str | None:
    match = _SEGMENT_RE.match(key.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def _incarnation_order(prefix: str) -> tuple[str, str]:
    """Newest last: by the time an incarnation was named (``<system identifier>-
    <UTC time>``), not by its name. A clone keeps its source's system identifier,
    so a tenant made again as a clone of an older one sorted before the
    incarnation it replaced, and the deleted database was read as the tenant's."""
    name = prefix.rstrip("/").rsplit("/", 1)[-1]
    return name.rpartition("-")[2], name


def list_pages(client: S3Client, **kwargs: Any) -> Iterator[Mapping[str, Any]]:
    """The listing's pages, one at a time (a year of segments is half a million keys)."""
    while True:
        page: Mapping[str, Any] = client.list_objects_v2(**kwargs)
        yield page
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def read(client: S3Client, storage: ObjectStorage, tenant: str,
         previous: ArchiveStatus | None, writing: str | None = "") -> ArchiveStatus | None:
    """The newest segment of the incarnation the primary archives into (None:
    nothing archived). The newest incarnation is not always the primary's: a
    database taken back to a volume kept from before an in-place recovery
    archives into its older one. ``writing`` (writing_incarnation): its name;
    None when the primary cannot be asked now (its page unreadable, its server
    restarted and not beaten since): the incarnation read before stays; "" when
    it cannot say (an archiver of an older image): the newest. Raises the
    client's errors (the caller reports the bucket unreadable)."""
    base = archiving.repository_key_prefix(storage, tenant)
    incarnations = sorted(
        (str(p["Prefix"]) for page in list_pages(client, Bucket=storage.bucket, Prefix=base,
                                            Delimiter="/")
         for p in page.get("CommonPrefixes") or []), key=_incarnation_order)
    if not incarnations:
        return None
    newest = incarnations[-1]
    known = f"{previous.repository_path.lstrip('/')}/" if (
        previous and previous.repository_path) else None
    if writing and f"{base}{writing}/" in incarnations:
        newest = f"{base}{writing}/"
    elif writing is None and known in incarnations:
        # Not the newest for a pass the primary did not answer: the window,
        # backups and drills would follow an abandoned database, and back.
        newest = known
    archive_prefix = f"{newest}archive/{archiving.stanza(tenant)}/"
    resume = previous.last_archived_key if previous and previous.last_archived_key else None
    options: dict[str, Any] = {"Bucket": storage.bucket, "Prefix": archive_prefix}
    if resume and resume.startswith(archive_prefix):
        options["StartAfter"] = resume
    else:
        previous = None  # another incarnation: start over
    last: Mapping[str, Any] | None = None
    for page in list_pages(client, **options):
        for obj in page.get("Contents") or []:
            if _segment(str(obj["Key"])) is not None:
                last = obj  # keys sort by timeline and position: the last is the newest
    repository_path = f"/{newest.rstrip('/')}"
    if last is None:
        if previous is not None:
            return previous
        return ArchiveStatus(repository_path=repository_path)
    modified = last["LastModified"]
    return ArchiveStatus(
        repository_path=repository_path,
        last_archived_wal=_segment(str(last["Key"])),
        last_archived_time=modified.astimezone(UTC) if isinstance(modified, datetime) else None,
        last_archived_key=str(last["Key"]),
    )


def writing_incarnation(metrics_page: str | None,
                        primary_pod: Mapping[str, Any] | None) -> str | None:
    """The incarnation the primary archives into, as its exporter's page says
    (builders/exporters.py), if its archiver said so since the server started:
    a restored database carries its source's heartbeat rows, naming the
    source's incarnation, until its own archiver beats. None: not known now
    (no page, no running server, no beat since its start); "": the page names
    none (an archiver of an image that does not write it)."""
    started = _server_started(primary_pod)
    if not metrics_page or started is None:
        return None
    for family in text_string_to_metric_families(metrics_page):
        for sample in family.samples:
            name = sample.labels.get("incarnation", "")
            if sample.name == INCARNATION_SAMPLE and name:
                return name if sample.value >= started.timestamp() else None
    return ""


def _server_started(pod: Mapping[str, Any] | None) -> datetime | None:
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == SERVER_CONTAINER:
            running = (container.get("state") or {}).get("running") or {}
            started = running.get("startedAt")
            return datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None
    return None


def archived_through(metrics_page: str) -> datetime | None:
    """The newest moment the primary says is archived, from its exporter's page
    (None: not on the page, or 0: it does not know)."""
    for family in text_string_to_metric_families(metrics_page):
        for sample in family.samples:
            if sample.name == ARCHIVED_THROUGH_SAMPLE and sample.value > 0:
                return datetime.fromtimestamp(sample.value, UTC)
    return None


def with_primary(archive: ArchiveStatus | None, reported: datetime | None,
                 previous: ArchiveStatus | None) -> ArchiveStatus | None:
    """``archive`` with the primary's ``archivedThrough``: ``reported``, what its
    page says now (:func:`archived_through`), else the one known before for the
    same repository (a primary that cannot be read, isolated or restarting, must
    not widen the window)."""
    if archive is None:
        return None
    if reported is None and previous is not None and (
            previous.repository_path == archive.repository_path):
        reported = previous.archived_through
    return archive.model_copy(update={"archived_through": reported})


def observation(
    archive: ArchiveStatus | None, archive_timeout_seconds: int, now: datetime,
    waiting_since: datetime, storage_error: str | None,
) -> status.Observation:
    """ContinuousArchiving. ``waiting_since``: when archiving was asked for (the
    first segment may take a restart of the primary and a stanza to come)."""
    allowed = allowed_age(archive_timeout_seconds)
    if storage_error is not None:
        # What was archived last is known from before: once it is too old, the
        # archive is failing whether or not the bucket can be read (the primary
        # most likely cannot reach it either).
        last = archive.last_archived_time if archive else None
        if last is not None and now - last > allowed:
            return status.Observation(
                types.CONTINUOUS_ARCHIVING, ConditionStatus.FALSE, "ArchivingStalled",
                f"newest segment known, {archive.last_archived_wal if archive else ''}, was "
                f"archived at {_at(last)} (allowed: {_seconds(allowed)} old); the "
                f"bucket cannot be read: {storage_error}")
        return status.Observation(types.CONTINUOUS_ARCHIVING, ConditionStatus.UNKNOWN,
                                  "StorageUnavailable", storage_error)
    if archive is None or archive.last_archived_time is None:
        if now - waiting_since <= allowed + STARTUP_GRACE:
            return status.Observation(types.CONTINUOUS_ARCHIVING, ConditionStatus.UNKNOWN,
                                      "WaitingForFirstSegment", "no WAL segment archived yet")
        return status.Observation(
            types.CONTINUOUS_ARCHIVING, ConditionStatus.FALSE, "NothingArchived",
            f"no WAL segment archived within {_seconds(allowed + STARTUP_GRACE)} of asking")
    age = max(now - archive.last_archived_time, timedelta(0))
    # Times, not ages, in the message: an age changes at every pass, and the status
    # with it (a write, and the tenant's reconcile it wakes, every few seconds).
    newest = (f"newest segment {archive.last_archived_wal} archived at "
              f"{_at(archive.last_archived_time)} (allowed: {_seconds(allowed)} old)")
    if age <= allowed:
        return status.Observation(types.CONTINUOUS_ARCHIVING, ConditionStatus.TRUE,
                                  "Archiving", newest)
    return status.Observation(types.CONTINUOUS_ARCHIVING, ConditionStatus.FALSE,
                              "ArchivingStalled", newest)


def _seconds(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())}s"


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
