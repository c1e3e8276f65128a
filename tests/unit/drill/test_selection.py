"""Which backup a drill restores: parsing ``--backup`` and choosing among runs (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stackforge_operator.backup.manifest import Manifest, ManifestArtifact, PostgresInfo
from stackforge_operator.backup.runid import run_started_at
from stackforge_operator.backup.store import RunListing, StoredObject
from stackforge_operator.drill.selection import (
    BackupChoice,
    SelectionKind,
    recovery_point,
    select_backup,
)

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def _run_id(day: int) -> str:
    return f"202611{day:02d}T020000Z-abc{day:03d}"


def _manifest(day: int, *, minutes: int = 5, dump: bool = True) -> Manifest:
    run_id = _run_id(day)
    started = run_started_at(run_id)
    assert started is not None
    artifacts = [ManifestArtifact(name="configuration", key=f"p/{run_id}/configuration.json",
                                  size_bytes=2, sha256="c" * 64)]
    if dump:
        artifacts.append(ManifestArtifact(name="postgres", key=f"p/{run_id}/postgres.dump",
                                          size_bytes=10, sha256="d" * 64))
    return Manifest(tenant="acme", run_id=run_id, bucket="b", prefix=f"p/{run_id}",
                    started_at=started, finished_at=started + timedelta(minutes=minutes),
                    artifacts=artifacts)


def _listing(manifest: Manifest | None, run_id: str, *, complete: bool = True) -> RunListing:
    started = run_started_at(run_id)
    assert started is not None
    names = ["postgres.dump"] + (["manifest.json"] if complete else [])
    return RunListing(run_id, started, [StoredObject(f"p/{run_id}/{n}", 1, started)
                                        for n in names])


class Bucket:
    """Runs and manifests, counting the manifest reads the selection makes."""

    def __init__(self, *manifests: Manifest, incomplete: tuple[str, ...] = ()) -> None:
        self.manifests = {m.run_id: m for m in manifests}
        self.runs = [_listing(m, m.run_id) for m in manifests]
        self.runs += [_listing(None, r, complete=False) for r in incomplete]
        self.loads: list[str] = []

    def load(self, run_id: str) -> Manifest | None:
        self.loads.append(run_id)
        return self.manifests.get(run_id)

    def select(self, choice: BackupChoice) -> str | None:
        found = select_backup(choice, self.runs, self.load)
        return found.run_id if found else None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latest", BackupChoice()),
        ("LATEST", BackupChoice()),
        ("20261103T020000Z-abc003", BackupChoice(SelectionKind.BY_ID, run_id=_run_id(3))),
        ("before=2026-11-03T02:04:00Z",
         BackupChoice(SelectionKind.BEFORE, before=datetime(2026, 11, 3, 2, 4, tzinfo=UTC))),
        # No offset: UTC, like every time the operator writes.
        ("before=2026-11-03T02:04:00",
         BackupChoice(SelectionKind.BEFORE, before=datetime(2026, 11, 3, 2, 4, tzinfo=UTC))),
        ("before=2026-11-03T04:04:00+02:00",
         BackupChoice(SelectionKind.BEFORE,
                      before=datetime(2026, 11, 3, 4, 4, tzinfo=timezone(timedelta(hours=2))))),
    ],
)
def test_parse(text: str, expected: BackupChoice) -> None:
    assert BackupChoice.parse(text) == expected


@pytest.mark.parametrize("text", ["", "newest", "2026-11-03", "before=yesterday", "../etc"])
def test_parse_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        BackupChoice.parse(text)


def test_latest_is_the_newest_complete_run_with_a_dump() -> None:
    bucket = Bucket(_manifest(1), _manifest(2), _manifest(3, dump=False),
                    incomplete=(_run_id(4),))
    assert bucket.select(BackupChoice()) == _run_id(2)
    # Newest first, the incomplete run never read: 3 (no dump), then 2.
    assert bucket.loads == [_run_id(3), _run_id(2)]


def test_latest_of_nothing_is_none() -> None:
    assert Bucket(incomplete=(_run_id(1),)).select(BackupChoice()) is None


def test_by_id_reads_only_that_manifest() -> None:
    bucket = Bucket(_manifest(1), _manifest(2))
    assert bucket.select(BackupChoice.parse(_run_id(1))) == _run_id(1)
    assert bucket.loads == [_run_id(1)]
    assert bucket.select(BackupChoice.parse(_run_id(9))) is None
    # A backup without a dump cannot be drilled, even when named.
    assert Bucket(_manifest(1, dump=False)).select(BackupChoice.parse(_run_id(1))) is None


def test_before_is_the_newest_finished_at_or_before_the_time() -> None:
    bucket = Bucket(_manifest(1), _manifest(2), _manifest(3))
    day2_finished = _manifest(2).finished_at
    assert bucket.select(BackupChoice(SelectionKind.BEFORE, before=day2_finished)) == _run_id(2)
    # Run 3 started after the time: skipped without reading its manifest.
    assert _run_id(3) not in bucket.loads
    # A second too early for run 2 (it had started, but not finished): run 1.
    bucket.loads.clear()
    early = day2_finished - timedelta(seconds=1)
    assert bucket.select(BackupChoice(SelectionKind.BEFORE, before=early)) == _run_id(1)
    assert bucket.loads == [_run_id(2), _run_id(1)]
    before_all = T0 - timedelta(days=1)
    assert bucket.select(BackupChoice(SelectionKind.BEFORE, before=before_all)) is None


def test_a_manifest_deleted_between_listing_and_reading_is_skipped() -> None:
    bucket = Bucket(_manifest(1), _manifest(2))
    del bucket.manifests[_run_id(2)]  # retention got there first
    assert bucket.select(BackupChoice()) == _run_id(1)


def test_the_recovery_point_is_the_snapshot_else_the_end_of_the_backup() -> None:
    manifest = _manifest(1)
    assert recovery_point(manifest) == manifest.finished_at  # no PostgresInfo at all
    snapshot = manifest.started_at + timedelta(seconds=2)
    info = PostgresInfo(server_version="15.18", server_version_num=150018, database="app")
    manifest.postgres = info
    assert recovery_point(manifest) == manifest.finished_at  # written before snapshotTime
    manifest.postgres = info.model_copy(update={"snapshot_time": snapshot})
    assert recovery_point(manifest) == snapshot
    # Round trip through the manifest's JSON keeps it.
    assert Manifest.from_json(manifest.to_json()).postgres.snapshot_time == snapshot  # type: ignore[union-attr]


def test_runs_started_in_the_same_second_go_by_their_recovery_point() -> None:
    # The random suffix orders these two the other way round.
    early, late = _manifest(5), _manifest(5)
    early.run_id, late.run_id = "20261105T020000Z-ffffff", "20261105T020000Z-000000"
    info = PostgresInfo(server_version="15.18", server_version_num=150018, database="app")
    early.postgres = info.model_copy(update={"snapshot_time": early.started_at})
    late.postgres = info.model_copy(
        update={"snapshot_time": late.started_at + timedelta(milliseconds=400)}
    )
    bucket = Bucket(_manifest(4), early, late)
    assert bucket.select(BackupChoice()) == late.run_id
    assert sorted(bucket.loads) == sorted([early.run_id, late.run_id])  # not day 4
