"""Retention applied to a bucket: delete what ``select_for_deletion`` picks, abort stale uploads.

The operator calls ``apply_retention`` after each successful run (from a
worker thread: it blocks on S3).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from stackforge_operator.backup.retention import (
    DEFAULT_IN_PROGRESS_GRACE,
    RunState,
    select_for_deletion,
)
from stackforge_operator.backup.store import BackupStore, OpenUpload
from stackforge_operator.models.backup import Retention

log = logging.getLogger("stackforge_operator.backup")


@dataclass
class RetentionReport:
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    aborted_uploads: list[OpenUpload] = field(default_factory=list)


def apply_retention(
    store: BackupStore,
    tenant: str,
    policy: Retention,
    now: datetime | None = None,
    *,
    running: Collection[str] = (),
    in_progress_grace: timedelta = DEFAULT_IN_PROGRESS_GRACE,
    tz: tzinfo = UTC,
) -> RetentionReport:
    """Delete the runs retention selects and abort multipart uploads older than the grace."""
    now = now or datetime.now(UTC)
    runs = store.list_runs(tenant)
    states = [
        RunState(r.run_id, r.started_at, complete=r.complete, running=r.run_id in running)
        for r in runs
    ]
    doomed = select_for_deletion(states, policy, now, in_progress_grace=in_progress_grace, tz=tz)
    report = RetentionReport()
    for run in runs:
        if run.run_id in doomed:
            store.delete_run(tenant, run.run_id)
            report.deleted.append(run.run_id)
            log.info("retention: deleted run %s/%s", tenant, run.run_id)
        else:
            report.kept.append(run.run_id)
    for upload in store.abandoned_uploads(tenant, in_progress_grace, now):
        if _run_of(store, tenant, upload) in running:
            continue
        store.abort_upload(upload)
        report.aborted_uploads.append(upload)
        log.info("retention: aborted abandoned upload of %s", upload.key)
    return report


def _run_of(store: BackupStore, tenant: str, upload: OpenUpload) -> str:
    return upload.key[len(store.config.tenant_prefix(tenant)):].split("/", 1)[0]
