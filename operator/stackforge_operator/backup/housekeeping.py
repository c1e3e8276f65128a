"""Retention applied to a bucket: delete what ``select_for_deletion`` picks, abort stale uploads.

The operator calls ``apply_retention`` after each successful run (from a
worker thread: it blocks on S3).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from types import MappingProxyType

from stackforge_operator.backup.retention import (
    DEFAULT_IN_PROGRESS_GRACE,
    RunState,
    select_for_deletion,
)
from stackforge_operator.backup.runid import run_started_at
from stackforge_operator.backup.store import BackupStore, OpenUpload
from stackforge_operator.models.backup import Retention

log = logging.getLogger("stackforge_operator.backup")


@dataclass
class RetentionReport:
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    aborted_uploads: list[OpenUpload] = field(default_factory=list)


# How much earlier than its Job's start a runner's clock may date its run id
# (the id is the runner's time, the Job's start the API server's).
CLOCK_SKEW = timedelta(minutes=5)


def apply_retention(
    store: BackupStore,
    tenant: str,
    policy: Retention,
    now: datetime | None = None,
    *,
    running: Collection[str] = (),
    running_since: datetime | None = None,
    in_progress_grace: timedelta = DEFAULT_IN_PROGRESS_GRACE,
    tz: tzinfo = UTC,
    held: Collection[str] = (),
    databases: Mapping[str, str] = MappingProxyType({}),
) -> RetentionReport:
    """Delete the runs retention selects and abort multipart uploads older than the grace.

    ``running``: run ids known to be in progress. ``running_since``: when the
    oldest Job still running for this tenant's policy started. The operator
    knows a Job, not the run id its runner makes, so every run without a
    manifest that started since then may be that Job's and is kept with its
    upload, however long it has been going (a dump may run for up to its
    deadline, 24 h at most, past the grace). ``held``: run ids of complete runs
    a restore is reading (reconcile/restore_holds.py), kept whatever the rules say.
    ``databases``: run id -> the system identifier of the database its dump is
    of (from its manifest): runs of another database than the newest are kept.
    """
    now = now or datetime.now(UTC)
    runs = store.list_runs(tenant)

    def in_progress(run_id: str, started_at: datetime | None, complete: bool) -> bool:
        return run_id in running or (
            not complete and running_since is not None and started_at is not None
            and started_at >= running_since - CLOCK_SKEW)

    states = [
        RunState(r.run_id, r.started_at, complete=r.complete,
                 running=in_progress(r.run_id, r.started_at, r.complete),
                 has_dump=r.has_dump, database=databases.get(r.run_id))
        for r in runs
    ]
    doomed = select_for_deletion(states, policy, now, in_progress_grace=in_progress_grace, tz=tz,
                                 held=held)
    report = RetentionReport()
    for run in runs:
        if run.run_id in doomed:
            store.delete_run(tenant, run.run_id)
            report.deleted.append(run.run_id)
            log.info("retention: deleted run %s/%s", tenant, run.run_id)
        else:
            report.kept.append(run.run_id)
    for upload in store.abandoned_uploads(tenant, in_progress_grace, now):
        run_id = _run_of(store, tenant, upload)
        if in_progress(run_id, run_started_at(run_id), complete=False):
            continue
        store.abort_upload(upload)
        report.aborted_uploads.append(upload)
        log.info("retention: aborted abandoned upload of %s", upload.key)
    return report


def _run_of(store: BackupStore, tenant: str, upload: OpenUpload) -> str:
    return upload.key[len(store.config.tenant_prefix(tenant)):].split("/", 1)[0]
