"""Which backup a drill restores: ``latest``, a run id, or ``before=<ISO time>``.

Only complete runs (a manifest exists) with a PostgreSQL dump count.  The
search reads manifests newest first and stops at the first that fits, so a
tenant with a year of backups costs one listing and a GET or two, not one
GET per backup.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby

from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.backup.runid import is_run_id
from stackforge_operator.backup.store import RunListing

DUMP_ARTIFACT = "postgres"
_BEFORE = "before="


class SelectionKind(enum.StrEnum):
    LATEST = "latest"
    BY_ID = "id"
    BEFORE = "before"


def parse_time(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 time; without an offset it is taken as UTC."""
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class BackupChoice:
    """The ``--backup`` argument, parsed."""

    kind: SelectionKind = SelectionKind.LATEST
    run_id: str | None = None
    before: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> BackupChoice:
        """``latest`` | ``<run id>`` | ``before=<ISO time>``; raises ValueError otherwise."""
        text = text.strip()
        if text.lower() == "latest":
            return cls()
        if text.lower().startswith(_BEFORE):
            return cls(SelectionKind.BEFORE, before=parse_time(text[len(_BEFORE):]))
        if is_run_id(text):
            return cls(SelectionKind.BY_ID, run_id=text)
        raise ValueError(
            f"{text!r} is neither 'latest', a run id (YYYYMMDDTHHMMSSZ-<suffix>) "
            "nor 'before=<ISO time>'"
        )

    def describe(self) -> str:
        if self.kind == SelectionKind.BY_ID:
            return f"backup {self.run_id}"
        if self.kind == SelectionKind.BEFORE:
            assert self.before is not None
            return f"the newest complete backup finished at or before {self.before.isoformat()}"
        return "the newest complete backup"


def recovery_point(manifest: Manifest) -> datetime:
    """When the restored data is from: the dump's snapshot, else the backup's end.

    Manifests written before the snapshot time was recorded fall back to
    ``finished_at``, which is later than the data (RPO then reads short by
    the dump's duration).
    """
    snapshot = manifest.postgres.snapshot_time if manifest.postgres else None
    return snapshot or manifest.finished_at


def has_dump(manifest: Manifest) -> bool:
    return manifest.artifact(DUMP_ARTIFACT) is not None


def select_backup(
    choice: BackupChoice,
    runs: Sequence[RunListing],
    load: Callable[[str], Manifest | None],
) -> Manifest | None:
    """The manifest ``choice`` names among ``runs``, or None when there is none.

    "Newest" means the freshest data: runs go by the start time in their id
    (a backup's snapshot follows its start within moments), and runs that
    started in the same second by their recovery point, read from their
    manifests.  ``load(run_id)`` reads a run's manifest (None when it has
    none).  A backup finishes after it starts, so runs that started after
    ``before`` are skipped without reading them.
    """
    if choice.kind == SelectionKind.BY_ID:
        assert choice.run_id is not None
        manifest = load(choice.run_id)
        return manifest if manifest is not None and has_dump(manifest) else None
    newest_first = sorted(runs, key=lambda r: r.started_at, reverse=True)
    for _, same_second in groupby(newest_first, key=lambda r: r.started_at):
        found = [m for run in same_second if (m := _candidate(choice, run, load)) is not None]
        if found:
            return max(found, key=lambda m: (recovery_point(m), m.finished_at))
    return None


def _candidate(
    choice: BackupChoice, run: RunListing, load: Callable[[str], Manifest | None]
) -> Manifest | None:
    if not run.complete:
        return None
    if choice.before is not None and run.started_at > choice.before:
        return None
    manifest = load(run.run_id)
    if manifest is None or not has_dump(manifest):
        return None  # deleted meanwhile, or a backup without a database dump
    if choice.before is not None and manifest.finished_at > choice.before:
        return None
    return manifest
