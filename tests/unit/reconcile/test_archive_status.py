"""The WAL archive as read from the bucket, and the ContinuousArchiving condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stackforge_operator.models.backup import ArchiveStatus, ObjectStorage
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.reconcile import archive_status

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STORAGE = ObjectStorage.model_validate({"bucket": "bkt", "prefix": "sf"})
BASE = "sf/_pgbackrest/acme/"
OLD = f"{BASE}7300000000000000001-20260101T000000Z/"
NEW = f"{BASE}7400000000000000001-20261101T000000Z/"
SHA = "0" * 40


def _segment_key(incarnation: str, segment: str, suffix: str = ".zst") -> str:
    return f"{incarnation}archive/acme/15-1/{segment[:16]}/{segment}-{SHA}{suffix}"


class Bucket:
    """list_objects_v2 over a dict of key -> LastModified, in pages of ``page``."""

    def __init__(self, objects: dict[str, datetime], page: int = 2) -> None:
        self.objects = objects
        self.page = page
        self.calls: list[dict[str, Any]] = []

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        prefix = kwargs["Prefix"]
        keys = sorted(k for k in self.objects if k.startswith(prefix)
                      and k > kwargs.get("StartAfter", ""))
        if kwargs.get("Delimiter") == "/":
            prefixes = sorted({prefix + k[len(prefix):].split("/", 1)[0] + "/"
                               for k in keys if "/" in k[len(prefix):]})
            return {"CommonPrefixes": [{"Prefix": p} for p in prefixes], "IsTruncated": False}
        start = int(kwargs.get("ContinuationToken", "0"))
        chunk = keys[start:start + self.page]
        more = start + self.page < len(keys)
        page: dict[str, Any] = {"Contents": [{"Key": k, "LastModified": self.objects[k]}
                                             for k in chunk], "IsTruncated": more}
        if more:
            page["NextContinuationToken"] = str(start + self.page)
        return page


SEGMENTS = ["000000010000000000000001", "000000010000000000000002", "000000010000000000000003"]


def _bucket() -> Bucket:
    objects = {f"{OLD}archive/acme/archive.info": NOW - timedelta(days=300),
               _segment_key(OLD, "000000010000000000000009"): NOW - timedelta(days=200),
               f"{NEW}archive/acme/archive.info": NOW - timedelta(hours=1),
               f"{NEW}archive/acme/15-1/00000001.history": NOW - timedelta(hours=1)}
    for i, segment in enumerate(SEGMENTS):
        objects[_segment_key(NEW, segment)] = NOW - timedelta(minutes=10 - i)
    return Bucket(objects)


def test_the_newest_segment_of_the_newest_incarnation() -> None:
    found = archive_status.read(_bucket(), STORAGE, "acme", None)  # type: ignore[arg-type]
    assert found == ArchiveStatus(
        repository_path=f"/{NEW.rstrip('/')}", last_archived_wal=SEGMENTS[-1],
        last_archived_time=NOW - timedelta(minutes=8),
        last_archived_key=_segment_key(NEW, SEGMENTS[-1]))


def test_listing_resumes_after_the_last_segment_seen() -> None:
    bucket = _bucket()
    first = archive_status.read(bucket, STORAGE, "acme", None)  # type: ignore[arg-type]
    bucket.calls.clear()
    again = archive_status.read(bucket, STORAGE, "acme", first)  # type: ignore[arg-type]
    assert again == first  # nothing new: what was known stays
    assert bucket.calls[-1]["StartAfter"] == _segment_key(NEW, SEGMENTS[-1])
    newer = "000000010000000000000004"
    bucket.objects[_segment_key(NEW, newer)] = NOW
    latest = archive_status.read(bucket, STORAGE, "acme", first)  # type: ignore[arg-type]
    assert latest is not None and latest.last_archived_wal == newer
    assert latest.last_archived_time == NOW


def test_a_new_incarnation_starts_over() -> None:
    bucket = _bucket()
    previous = ArchiveStatus(repository_path="/x", last_archived_wal="0" * 24,
                             last_archived_key=_segment_key(OLD, "000000010000000000000009"),
                             last_archived_time=NOW - timedelta(days=200))
    found = archive_status.read(bucket, STORAGE, "acme", previous)  # type: ignore[arg-type]
    assert found is not None and found.last_archived_wal == SEGMENTS[-1]
    assert "StartAfter" not in bucket.calls[-1]


def test_the_newest_incarnation_is_the_last_named_not_the_last_by_name() -> None:
    """A tenant made again as a clone of an older tenant keeps that tenant's
    system identifier, which may sort before the one of the database it
    replaced: that deleted database was read as the tenant's (its window, its
    backups, the restore source of a drill or a clone "at latest")."""
    clone = f"{BASE}7200000000000000001-20261201T000000Z/"
    bucket = _bucket()
    bucket.objects[_segment_key(clone, "000000020000000000000004")] = NOW - timedelta(minutes=1)
    found = archive_status.read(bucket, STORAGE, "acme", None)  # type: ignore[arg-type]
    assert found is not None and found.repository_path == f"/{clone.rstrip('/')}"
    assert found.last_archived_wal == "000000020000000000000004"


def test_the_incarnation_the_primary_archives_into_is_read_though_a_newer_one_exists() -> None:
    """A database taken back to a volume kept from before an in-place recovery
    archives into its older incarnation: its window, not the abandoned one's."""
    old_name = OLD.rstrip("/").rsplit("/", 1)[-1]
    found = archive_status.read(_bucket(), STORAGE, "acme", None,  # type: ignore[arg-type]
                                writing=old_name)
    assert found is not None
    assert found.repository_path == f"/{OLD.rstrip('/')}"
    assert found.last_archived_wal == "000000010000000000000009"
    # One the bucket does not hold (yet): the newest, as without a word from it.
    unknown = archive_status.read(_bucket(), STORAGE, "acme", None,  # type: ignore[arg-type]
                                  writing="7500000000000000001-20261201T000000Z")
    assert unknown is not None and unknown.repository_path == f"/{NEW.rstrip('/')}"


def _incarnation_page(name: str, beat: datetime) -> str:
    return ("# HELP stackforge_incarnation_beat_seconds x\n"
            "# TYPE stackforge_incarnation_beat_seconds gauge\n"
            f'stackforge_incarnation_beat_seconds{{incarnation="{name}",server="localhost:5432"}}'
            f" {beat.timestamp()}\n")


def _primary(started: str | None) -> dict[str, Any]:
    state = {"running": {"startedAt": started}} if started else {"waiting": {}}
    return {"status": {"containerStatuses": [
        {"name": "archiver", "state": {"running": {"startedAt": "2026-11-30T00:00:00Z"}}},
        {"name": "postgres", "state": state}]}}


def test_the_primary_names_its_incarnation_once_its_archiver_beat_since_it_started() -> None:
    name = "7300000000000000001-20260101T000000Z"
    page = _incarnation_page(name, NOW - timedelta(seconds=30))
    assert archive_status.writing_incarnation(page, _primary("2026-11-30T11:00:00Z")) == name
    # A restored database's rows are its source's, older than the server's start.
    assert archive_status.writing_incarnation(page, _primary("2026-11-30T11:59:50Z")) is None
    assert archive_status.writing_incarnation(page, _primary(None)) is None
    assert archive_status.writing_incarnation(page, None) is None
    assert archive_status.writing_incarnation(None, _primary("2026-11-30T11:00:00Z")) is None
    # No row names one (an archiver of an older image): it cannot say.
    nothing = _incarnation_page("", datetime.fromtimestamp(0, UTC))
    assert archive_status.writing_incarnation(nothing, _primary("2026-11-30T11:00:00Z")) == ""


def test_while_the_primary_cannot_be_asked_the_incarnation_read_before_stays() -> None:
    """Its page unreadable for a pass (isolated, a scrape timeout, its server just
    restarted): the status went to the newest incarnation, an abandoned
    database's, and back, listing each archive anew every time."""
    old_name = OLD.rstrip("/").rsplit("/", 1)[-1]
    bucket = _bucket()
    on_old = archive_status.read(bucket, STORAGE, "acme", None,  # type: ignore[arg-type]
                                 writing=old_name)
    assert on_old is not None and on_old.repository_path == f"/{OLD.rstrip('/')}"
    kept = archive_status.read(bucket, STORAGE, "acme", on_old,  # type: ignore[arg-type]
                               writing=None)
    assert kept == on_old
    # An archiver that cannot say which (an older image): the newest, as before.
    newest = archive_status.read(bucket, STORAGE, "acme", on_old,  # type: ignore[arg-type]
                                 writing="")
    assert newest is not None and newest.repository_path == f"/{NEW.rstrip('/')}"
    # Nothing known before: the newest.
    first = archive_status.read(bucket, STORAGE, "acme", None,  # type: ignore[arg-type]
                                writing=None)
    assert first is not None and first.repository_path == f"/{NEW.rstrip('/')}"


def test_nothing_archived_yet() -> None:
    assert archive_status.read(Bucket({}), STORAGE, "acme", None) is None  # type: ignore[arg-type]
    only_info = Bucket({f"{NEW}archive/acme/archive.info": NOW})
    found = archive_status.read(only_info, STORAGE, "acme", None)  # type: ignore[arg-type]
    assert found == ArchiveStatus(repository_path=f"/{NEW.rstrip('/')}")


def _archived(ago: timedelta) -> ArchiveStatus:
    return ArchiveStatus(last_archived_wal=SEGMENTS[0], last_archived_time=NOW - ago)


def test_true_while_the_newest_segment_is_younger_than_a_timeout_and_a_margin() -> None:
    allowed = archive_status.allowed_age(60)
    assert timedelta(seconds=60) == archive_status.PUSH_MARGIN  # the default
    assert allowed == timedelta(seconds=120)
    ok = archive_status.observation(_archived(allowed), 60, NOW, NOW, None)
    assert (ok.status, ok.reason) == (ConditionStatus.TRUE, "Archiving")
    late = archive_status.observation(_archived(allowed + timedelta(seconds=1)), 60, NOW, NOW,
                                      None)
    assert (late.status, late.reason) == (ConditionStatus.FALSE, "ArchivingStalled")
    assert SEGMENTS[0] in late.message and "archived at 2026-11-30T11:57:59Z" in late.message
    # A time, not an age: the same archive read a pass later writes no new status.
    same = _archived(allowed + timedelta(seconds=1))
    assert archive_status.observation(same, 60, NOW + timedelta(seconds=5), NOW,
                                      None).message == late.message


def test_waiting_for_the_first_segment_then_false() -> None:
    grace = archive_status.allowed_age(60) + archive_status.STARTUP_GRACE
    waiting = archive_status.observation(None, 60, NOW, NOW - grace, None)
    assert (waiting.status, waiting.reason) == (ConditionStatus.UNKNOWN, "WaitingForFirstSegment")
    empty = ArchiveStatus(repository_path="/x")
    never = archive_status.observation(empty, 60, NOW, NOW - grace - timedelta(seconds=1), None)
    assert (never.status, never.reason) == (ConditionStatus.FALSE, "NothingArchived")


def test_an_unreadable_bucket_is_unknown_until_the_last_known_segment_is_too_old() -> None:
    found = archive_status.observation(_archived(timedelta(0)), 60, NOW, NOW, "denied")
    assert (found.status, found.reason, found.message) == (
        ConditionStatus.UNKNOWN, "StorageUnavailable", "denied")
    assert archive_status.observation(None, 60, NOW, NOW, "denied").reason == (
        "StorageUnavailable")
    stale = archive_status.observation(_archived(timedelta(seconds=121)), 60, NOW, NOW,
                                       "connection refused")
    assert (stale.status, stale.reason) == (ConditionStatus.FALSE, "ArchivingStalled")
    assert "archived at 2026-11-30T11:57:59Z" in stale.message
    assert "connection refused" in stale.message


def _page(seconds: float) -> str:
    return ("# HELP stackforge_archive_archived_through_seconds x\n"
            "# TYPE stackforge_archive_archived_through_seconds gauge\n"
            f'stackforge_archive_archived_through_seconds{{server="localhost:5432"}} {seconds}\n')


def test_the_primary_says_how_far_the_archive_reaches() -> None:
    moment = NOW - timedelta(minutes=3)
    assert archive_status.archived_through(_page(moment.timestamp())) == moment
    # 0: the primary does not know (nothing archived since its statistics' reset).
    assert archive_status.archived_through(_page(0)) is None
    assert archive_status.archived_through("up 1\n") is None


def test_a_primary_that_cannot_be_read_keeps_the_figure_known_before() -> None:
    known = ArchiveStatus(repository_path="/r1", last_archived_time=NOW,
                          archived_through=NOW - timedelta(minutes=5))
    bucket = ArchiveStatus(repository_path="/r1", last_archived_time=NOW)
    fresh = archive_status.with_primary(
        bucket, archive_status.archived_through(_page(NOW.timestamp() - 30)), known)
    assert fresh is not None and fresh.archived_through == NOW - timedelta(seconds=30)
    # Unreadable, or not knowing: the last figure stays (the window must not widen).
    for reported in (None, archive_status.archived_through(_page(0))):
        kept = archive_status.with_primary(bucket, reported, known)
        assert kept is not None and kept.archived_through == known.archived_through
    # Another incarnation's figure says nothing of this one.
    other = ArchiveStatus(repository_path="/r2", last_archived_time=NOW)
    moved = archive_status.with_primary(other, None, known)
    assert moved is not None and moved.archived_through is None
    assert archive_status.with_primary(None, NOW, known) is None
