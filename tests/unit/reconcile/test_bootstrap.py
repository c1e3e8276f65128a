"""What a tenant's bootstrap record says and does as its restore goes (reconcile/bootstrap.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from stackforge_operator import status
from stackforge_operator.builders import postgres
from stackforge_operator.models.tenant import BootstrapMethod, BootstrapStatus, DumpSource
from stackforge_operator.reconcile.bootstrap import (
    completed,
    completed_while_held,
    dump_argument,
    dump_compatibility_problem,
    dump_progress,
    events,
    primary_serving,
    rollup,
)
from stackforge_operator.reconcile.tenant_bootstrap import primary_ready
from tests.unit.builders.tenants import tenant

STARTED = datetime(2026, 12, 1, 10, tzinfo=UTC)
ARCHIVE = BootstrapStatus(source_tenant="acme", source_namespace="tenant-acme",
                          backup_policy="nightly", repository_path="/backups/_pgbackrest/acme/x",
                          recovery_target="2026-12-01T09:00:00Z", start_time=STARTED)
DUMP = BootstrapStatus(method=BootstrapMethod.LOGICAL, source_tenant="acme",
                       source_namespace="tenant-acme", backup_policy="nightly", backup="latest",
                       job_name="bootstrap-dump-restore", start_time=STARTED)
READY = (status.Progress.READY, "AllComponentsReady", "3 components ready")


def _job(*ended: str) -> dict[str, Any]:
    return {"metadata": {"name": "bootstrap-dump-restore", "namespace": "tenant-acme-copy"},
            "status": {"conditions": [{"type": c, "status": "True"} for c in ended]}}


def test_the_dump_asked_for_is_a_run_id_a_time_or_the_latest() -> None:
    assert dump_argument(DumpSource(tenant="acme")) == "latest"
    assert dump_argument(DumpSource(tenant="acme", backup_id="20261201T020000Z-ab")) == (
        "20261201T020000Z-ab")
    assert dump_argument(DumpSource.model_validate(
        {"tenant": "acme", "finishedBefore": "2026-12-01T03:30:00+01:00"})) == (
        "before=2026-12-01T02:30:00Z")


def test_a_dump_goes_into_the_same_or_a_newer_major_only() -> None:
    source = tenant({"components": {"postgres": {"version": 15}}}, name="acme")
    assert dump_compatibility_problem(tenant({"components": {"postgres": {"version": 16}}},
                                             name="acme-copy"), source) is None
    assert dump_compatibility_problem(tenant(name="acme-copy"), source) is None
    older = tenant({"components": {"postgres": {"version": 14}}}, name="acme-copy")
    assert "set spec.components.postgres.version to 15 or newer" in (
        dump_compatibility_problem(older, source) or "")


def test_a_dump_is_done_when_its_job_passed_not_when_the_primary_is_ready() -> None:
    assert completed(DUMP, True, STARTED).completion_time is None
    assert dump_progress(DUMP, None, {}, STARTED) == DUMP
    assert dump_progress(DUMP, _job(), {}, STARTED) == DUMP
    done = dump_progress(DUMP, _job("Complete"), {"verdict": "Passed",
                                                  "backupId": "20261201T020000Z-ab"}, STARTED)
    assert done.completion_time == STARTED and done.backup_id == "20261201T020000Z-ab"
    assert dump_progress(done, _job("Failed"), {}, STARTED.replace(hour=11)) == done


def test_a_failed_job_keeps_its_reason_until_another_job_runs() -> None:
    failed = dump_progress(DUMP, _job("Failed"), {
        "verdict": "Failed", "reason": "BackupNotFound", "message": "no run no-such-run"},
        STARTED)
    assert failed.completion_time is None
    assert failed.message == "BackupNotFound: no run no-such-run"
    # Gone without a result line: where to look instead.
    assert dump_progress(DUMP, _job("Failed"), {}, STARTED).message == (
        "JobFailed: kubectl logs -n tenant-acme-copy job/bootstrap-dump-restore")
    # A Job that "completed" without passing has not restored anything.
    assert dump_progress(DUMP, _job("Complete"), {"verdict": "Failed", "reason": "CheckFailed",
                                                  "message": "x"}, STARTED).completion_time is None
    # The failed Job deleted by a person: the new one speaks for itself.
    assert dump_progress(failed, _job(), {}, STARTED).message is None


def test_the_rollup_holds_the_tenant_until_its_restore_is_done() -> None:
    # An archive: not Ready while the restore's settings still restart the primary.
    progress, reason, message = rollup(ARCHIVE, *READY)
    assert (progress, reason) == (status.Progress.RECONCILING, "Restored")
    assert "acme" in message and "2026-12-01T09:00:00Z" in message
    assert rollup(completed(ARCHIVE, True, STARTED), *READY) == READY
    # A dump: restoring, then stalled with the reason and how to try again.
    assert rollup(DUMP, *READY)[:2] == (status.Progress.RECONCILING, "RestoringDump")
    stalled = rollup(DUMP.model_copy(update={"message": "BackupNotFound: gone"}), *READY)
    assert stalled[:2] == (status.Progress.STALLED, "BootstrapFailed")
    assert "BackupNotFound: gone" in stalled[2]
    assert "delete Job bootstrap-dump-restore" in stalled[2]
    # Restored and committed, then not verified: a second Job would only meet
    # what the first made ("already exists"); the message said "as it was".
    kept = "CheckFailed: shop.orders has 9 rows, the dump 10"
    unverified = rollup(DUMP.model_copy(update={"message": kept}), *READY)
    assert unverified[:2] == (status.Progress.STALLED, "BootstrapFailed")
    assert "as it was" not in unverified[2] and "delete Job" not in unverified[2]
    assert "the database then holds it" in unverified[2]
    assert "delete the tenant and its claim data-postgres-0" in unverified[2]
    # A dump whose hash differs never reaches its end, so never commits.
    mismatched = rollup(DUMP.model_copy(update={
        "message": "ChecksumMismatch: the stream's sha256 differs"}), *READY)
    assert "as it was" in mismatched[2] and "delete Job" in mismatched[2]
    # A problem of the tenant's own speaks first; no bootstrap, no change.
    own = (status.Progress.STALLED, "ImagePullBackOff", "no image")
    assert rollup(DUMP, *own) == own and rollup(None, *READY) == READY


def test_events_say_what_is_restored_how_it_failed_and_when_it_is_done() -> None:
    assert [e[1] for e in events(None, DUMP)] == ["RestoreStarted"]
    assert "tenant acme's dump (latest)" in events(None, DUMP)[0][2]
    failed = DUMP.model_copy(update={"message": "RestoreFailed: role x"})
    assert events(DUMP, failed) == [
        ("Warning", "RestoreFailed", "restoring tenant acme's dump (latest): RestoreFailed: "
                                     "role x")]
    assert events(failed, failed) == []
    done = DUMP.model_copy(update={"completion_time": STARTED, "backup_id": "r1"})
    assert [(e[0], e[1]) for e in events(DUMP, done)] == [("Normal", "RestoreComplete")]
    assert "owners and grants included" in events(DUMP, done)[0][2]
    assert "at 2026-12-01T09:00:00Z" in events(ARCHIVE, completed(ARCHIVE, True, STARTED))[0][2]


def test_a_restore_is_complete_only_with_a_primary_pod_that_runs() -> None:
    """Cloned with spec.suspend (or a window opening mid-restore), the primary's
    StatefulSet at zero is a ready workload: the restore was recorded complete,
    its settings went, and the resumed primary started on half a database."""
    stopped = status.workload_state(
        {"metadata": {"name": postgres.NAME, "labels": {}}},
        {"metadata": {"generation": 2}, "spec": {"replicas": 0},
         "status": {"observedGeneration": 2, "replicas": 0}})
    assert stopped.ready
    assert not primary_serving([stopped])
    assert completed(ARCHIVE, primary_serving([stopped]), STARTED).completion_time is None
    serving = status.WorkloadState(postgres.NAME, "postgres", 1, 1, True, "")
    assert primary_serving([serving])
    other = status.WorkloadState("redis", "redis", 1, 1, True, "")
    assert not primary_serving([other])


def test_a_database_found_again_is_told_as_not_restored_not_as_restored() -> None:
    kept = ARCHIVE.model_copy(update={"kept_volume": "data-postgres-0",
                                      "completion_time": STARTED})
    [(kind, reason, text)] = events(None, kept)
    assert (kind, reason) == ("Warning", "RestoreSkipped")
    assert "data-postgres-0 already holds a database" in text
    assert events(kept, kept) == []
    assert rollup(kept, *READY) == READY


def _primary(ready: int) -> dict[str, Any]:
    return {"metadata": {"name": postgres.NAME, "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": ready,
                       "updatedReplicas": 1, "currentReplicas": 1, "availableReplicas": ready,
                       "currentRevision": "postgres-1", "updateRevision": "postgres-1"}}


def test_a_restore_whose_source_went_is_recorded_once_its_primary_serves() -> None:
    """The source tenant deleted mid-restore held the clone (nothing applied) and
    its completion was never recorded: held for ever, though its primary,
    started with the restore's settings, finished the restore."""
    assert completed_while_held(ARCHIVE, primary_ready(_primary(ready=0)), STARTED) is None
    assert completed_while_held(ARCHIVE, primary_ready(None), STARTED) is None
    done = completed_while_held(ARCHIVE, primary_ready(_primary(ready=1)), STARTED)
    assert done is not None and done.completion_time == STARTED
    # A dump is done when its Job is, and what is done stays done.
    assert completed_while_held(DUMP, primary_ready(_primary(ready=1)), STARTED) is None
    assert completed_while_held(done, primary_ready(_primary(ready=1)), STARTED) is None
    assert completed_while_held(None, primary_ready(_primary(ready=1)), STARTED) is None


def test_a_dump_that_failed_after_its_commit_speaks_for_the_attempts_after_it() -> None:
    """The Job retries (backoffLimit 2): the attempts after a failure past the
    commit fail on what it made, and whichever pod was listed first gave the
    result, which could tell to delete the Job and try again over an unverified
    dump."""
    from stackforge_operator.drill import outcome
    from stackforge_operator.reconcile.bootstrap import dump_result

    def line(reason: str) -> str:
        return json.dumps({"verdict": "Failed", "reason": reason, "message": reason})

    retried = [line("RestoreFailed"), line("CheckFailed"), line("RestoreFailed")]
    assert dump_result(retried, outcome.parse_result)["reason"] == "CheckFailed"
    # Without one, the first result, and without any the log's end, as before.
    assert dump_result([line("RestoreFailed"), line("Unreachable")],
                       outcome.parse_result)["reason"] == "RestoreFailed"
    assert dump_result(["pg_restore: error: out of memory"], outcome.parse_result) == {
        "message": "pg_restore: error: out of memory"}
