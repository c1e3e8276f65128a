"""The drill runner as a drill Job's pod runs it, against a real PostgreSQL and a real S3 server.

Every backup here is made by the real backup runner, and every drill is
``python -m stackforge_operator.drill.cli`` as a child process with its
configuration in flags and its secrets and scratch database in the
environment, exactly as the drill Job's container runs ``stackforge-operator
drill run``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.backup.store import BackupStore, StoreConfig
from stackforge_operator.devcluster.ports import free_port
from tests.support import postgres_server as pg
from tests.support.drill import drill_argv
from tests.support.fault_proxy import opening_after
from tests.support.fixtures_backup import (
    RunnerProcess,
    SeededDatabase,
    recorded_invocations,
    recording_pg_bin_dir,
    run_runner,
    run_runner_measured,
    runner_argv,
)
from tests.support.s3_server import S3Credentials, S3Server

TENANT = "acme"
MiB = 1024 * 1024


@pytest.fixture
def scratch_database(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """The empty database a drill restores into, dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    try:
        yield name
    finally:
        postgres_server.drop_database(name)


def _store(s3: S3Server, bucket: str) -> BackupStore:
    return BackupStore(StoreConfig(bucket=bucket), client=s3.client())


def _backup(postgres: pg.PostgresServer, s3: S3Server, database: str, bucket: str,
            *extra: str) -> Manifest:
    argv = runner_argv(tenant=TENANT, bucket=bucket, endpoint=s3.endpoint,
                       extra=["--pg-bin-dir", str(postgres.bin_dir), *extra])
    run = run_runner(argv, pg.env_for(postgres, database, s3.env()))
    assert run.returncode == 0, f"backup failed:\n{run.stdout}\n{run.stderr}"
    manifest = _store(s3, bucket).read_manifest(TENANT, run.result["runId"])
    assert manifest is not None
    return manifest


def _drill(
    postgres: pg.PostgresServer,
    s3: S3Server,
    scratch: str,
    bucket: str,
    *extra: str,
    env: dict[str, str] | None = None,
    endpoint: str | None = None,
    **kwargs: Any,
) -> RunnerProcess:
    argv = drill_argv(tenant=TENANT, bucket=bucket, endpoint=endpoint or s3.endpoint,
                      extra=["--pg-bin-dir", str(postgres.bin_dir), *extra])
    process_env = pg.env_for(postgres, scratch, s3.env())
    process_env.update(env or {})
    return run_runner(argv, process_env, **kwargs)


def _verdict(run: RunnerProcess, verdict: str, reason: str | None = None) -> dict[str, Any]:
    result = run.result
    assert result["verdict"] == verdict, f"{result}\n{run.stderr}"
    assert result.get("reason") == reason, f"{result}\n{run.stderr}"
    assert run.returncode == (0 if verdict == "Passed" else 1)
    return result


def _report(s3: S3Server, bucket: str, result: dict[str, Any]) -> dict[str, Any]:
    location = result["reportLocation"]
    assert location.startswith(f"s3://{bucket}/")
    key = location[len(f"s3://{bucket}/"):]
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    report: dict[str, Any] = json.loads(body)
    return report


def _iso(when: datetime) -> str:
    return when.isoformat()


# ---------------------------------------------------------------------- a drill that passes


def test_drill_restores_the_latest_backup_and_passes(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    checks_file = tmp_path / "checks.json"
    checks_file.write_text(json.dumps([
        {"name": "orders", "sql": "SELECT count(*) FROM shop.orders", "expected": "4000"},
        {"name": "tier-2-customers", "sql": "SELECT id FROM shop.customers "
         "WHERE meta->>'tier' = '2'", "expectedRows": 167},
        {"name": "quotes", "sql": "SET search_path = public; "
         "SELECT line FROM audit_log WHERE id = 1", "expected": "event 1 with\ttab and 'quote'"},
    ]))
    termination_log = tmp_path / "termination-log"
    started = datetime.now(UTC)
    run = _drill(
        postgres_server, s3_server, scratch_database, s3_bucket,
        "--run-id", "drill-1", "--started-at", _iso(started),
        "--rto-seconds", "600", "--rpo-seconds", "3600",
        "--checks-file", str(checks_file), "--termination-log", str(termination_log),
    )
    result = _verdict(run, "Passed")
    assert termination_log.read_text() == run.stdout

    assert result["backupId"] == manifest.run_id
    assert result["backupLocation"] == manifest.location
    assert manifest.postgres is not None and manifest.postgres.snapshot_time is not None
    # The recovery point is the dump's snapshot, which precedes the backup's end.
    recovery_point = datetime.fromisoformat(result["recoveryPointTime"])
    assert recovery_point == manifest.postgres.snapshot_time
    assert manifest.started_at <= recovery_point <= manifest.finished_at
    assert 0 <= result["rpoSeconds"] <= 60 and result["rpoMet"] is True
    assert 0 < result["rtoSeconds"] <= 60 and result["rtoMet"] is True
    assert (result["rtoObjectiveSeconds"], result["rpoObjectiveSeconds"]) == (600, 3600)

    kinds = [(c["kind"], c["name"]) for c in result["checks"]]
    assert kinds[:2] == [("Checksum", "postgres.dump"), ("Connectivity", "connectivity")]
    assert [name for kind, name in kinds if kind == "RowCount"] == sorted(
        seeded_database.row_counts
    )
    assert [name for kind, name in kinds if kind == "Query"] == [
        "orders", "tier-2-customers", "quotes",
    ]
    assert all(c["passed"] for c in result["checks"])
    assert result["checkSummary"] == {"total": 9, "passed": 9, "failed": 0}

    # The restored data is the source's, table for table.
    assert postgres_server.row_counts(scratch_database) == seeded_database.row_counts
    for table in ("customers", "orders"):
        assert postgres_server.table_checksum(
            scratch_database, "shop", table
        ) == postgres_server.table_checksum(seeded_database.name, "shop", table)

    # The evidence beside the backup: which backup, every check, RTO, RPO, verdict.
    assert result["reportLocation"] == (
        f"s3://{s3_bucket}/stackforge/{TENANT}/{manifest.run_id}/drills/drill-1.json"
    )
    report = _report(s3_server, s3_bucket, result)
    assert report["verdict"] == "Passed" and report["runId"] == "drill-1"
    assert report["backup"]["id"] == manifest.run_id
    assert report["backup"]["dump"]["sha256"] == manifest.artifact("postgres").sha256  # type: ignore[union-attr]
    assert report["restore"]["sha256"] == report["backup"]["dump"]["sha256"]
    assert report["restore"]["exitCode"] == 0
    assert report["checks"] == result["checks"]
    assert report["rto"]["met"] is True and report["rto"]["objectiveSeconds"] == 600
    assert datetime.fromisoformat(report["startedAt"]) == started
    assert started < datetime.fromisoformat(report["verifiedAt"])
    assert report["rto"]["seconds"] == pytest.approx(
        (datetime.fromisoformat(report["verifiedAt"]) - started).total_seconds(), abs=0.01
    )
    # A report is not a backup: the bucket still holds exactly one complete run.
    runs = _store(s3_server, s3_bucket).list_runs(TENANT)
    assert [(r.run_id, r.complete) for r in runs] == [(manifest.run_id, True)]


def test_backup_chosen_by_id_and_by_time(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    first = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    postgres_server.psql("INSERT INTO public.audit_log (line) VALUES ('later')",
                         seeded_database.name)
    second = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    assert first.postgres and second.postgres
    assert second.postgres.row_counts["public.audit_log"] == 1235

    for selector, expected in [
        ("latest", second),
        (first.run_id, first),
        (f"before={_iso(first.finished_at)}", first),
        (f"before={_iso(second.finished_at + timedelta(seconds=1))}", second),
    ]:
        scratch = postgres_server.create_database(f"scratch_{uuid.uuid4().hex[:10]}")
        try:
            run = _drill(postgres_server, s3_server, scratch, s3_bucket, "--backup", selector)
            result = _verdict(run, "Passed")
            assert result["backupId"] == expected.run_id, selector
            assert postgres_server.row_counts(scratch) == expected.postgres.row_counts  # type: ignore[union-attr]
        finally:
            postgres_server.drop_database(scratch)


def test_a_zstd_dump_and_a_gzip_dump_both_restore_and_zstd_by_hand_too(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """#18 item 3: a policy's Zstd dumps and the Gzip ones (every backup made
    before) restore through the same drill path, each to the source's data; a
    person restores a zstd dump with ``zstd -dc | pg_restore`` (docs/operator.md)."""
    zstd = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                   "--dump-compression", "zstd")
    gzip = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    client = s3_server.client()
    for manifest, name, fmt, magic in (
            (zstd, "postgres.dump.zst", "pg_dump-custom+zstd", b"\x28\xb5\x2f\xfd"),
            (gzip, "postgres.dump", "pg_dump-custom", b"PGDMP")):
        dump = manifest.artifact("postgres")
        assert dump is not None and dump.key.endswith(f"/{manifest.run_id}/{name}")
        assert dump.format == fmt
        head = client.get_object(Bucket=s3_bucket, Key=dump.key, Range="bytes=0-4")
        assert head["Body"].read().startswith(magic)
        scratch = postgres_server.create_database(f"scratch_{uuid.uuid4().hex[:10]}")
        try:
            run = _drill(postgres_server, s3_server, scratch, s3_bucket,
                         "--backup", manifest.run_id)
            result = _verdict(run, "Passed")
            checksum = next(c for c in result["checks"] if c["kind"] == "Checksum")
            assert (checksum["expected"], checksum["passed"]) == (dump.sha256, True)
            assert postgres_server.row_counts(scratch) == seeded_database.row_counts
            for table in ("customers", "orders"):
                assert postgres_server.table_checksum(scratch, "shop", table) == \
                    postgres_server.table_checksum(seeded_database.name, "shop", table)
        finally:
            postgres_server.drop_database(scratch)

    # By hand, as docs/operator.md says: the object, zstd -dc, pg_restore.
    dump = zstd.artifact("postgres")
    assert dump is not None
    stored = tmp_path / "postgres.dump.zst"
    stored.write_bytes(client.get_object(Bucket=s3_bucket, Key=dump.key)["Body"].read())
    scratch = postgres_server.create_database(f"scratch_{uuid.uuid4().hex[:10]}")
    try:
        env = pg.env_for(postgres_server, scratch, {})
        decompressed = subprocess.Popen(["zstd", "-dc", str(stored)], stdout=subprocess.PIPE)
        restored = subprocess.run(
            [str(postgres_server.bin_dir / "pg_restore"), "--no-owner", "--no-privileges",
             "--exit-on-error", "-d", scratch], stdin=decompressed.stdout, env=env,
            capture_output=True, text=True, check=False, timeout=120)
        assert decompressed.wait(timeout=60) == 0
        assert restored.returncode == 0, restored.stderr
        assert postgres_server.row_counts(scratch) == seeded_database.row_counts
    finally:
        postgres_server.drop_database(scratch)


# ---------------------------------------------------------------------- failures


def test_a_zstd_dump_that_decodes_a_thousandfold_restores_within_the_runners_memory(
    postgres_server: pg.PostgresServer, s3_server: S3Server, pg_database: str, s3_bucket: str,
) -> None:
    """Blank-padded rows compress a thousandfold and more: each stored 4 MiB chunk
    was decoded in one piece, and the runner (256 MiB limit in its pod) was
    killed on every drill and bootstrap of such a dump."""
    postgres_server.psql("CREATE TABLE padded (id int, filler char(2000)); "
                         "INSERT INTO padded SELECT i, '' FROM generate_series(1, 150000) i",
                         pg_database)
    manifest = _backup(postgres_server, s3_server, pg_database, s3_bucket,
                       "--dump-compression", "zstd")
    dump = manifest.artifact("postgres")
    assert dump is not None and dump.size_bytes < 4 * MiB  # 300 MB of rows in one chunk
    scratch = postgres_server.create_database(f"scratch_{uuid.uuid4().hex[:10]}")
    try:
        argv = drill_argv(tenant=TENANT, bucket=s3_bucket, endpoint=s3_server.endpoint,
                          extra=["--pg-bin-dir", str(postgres_server.bin_dir),
                                 "--backup", manifest.run_id])
        run = run_runner_measured(argv, pg.env_for(postgres_server, scratch, s3_server.env()))
        _verdict(run, "Passed")
        assert postgres_server.row_counts(scratch) == postgres_server.row_counts(pg_database)
        assert 0 < run.peak_rss_bytes <= 128 * MiB, f"peak RSS {run.peak_rss_bytes / MiB:.0f} MiB"
    finally:
        postgres_server.drop_database(scratch)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_flipped_bytes_in_the_dump_fail_with_checksum_mismatch(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    compression: str,
) -> None:
    """With zstd, the corrupt object stops decoding part-way: still the checksum's
    verdict, not a crash of the runner."""
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                       "--dump-compression", compression)
    dump = manifest.artifact("postgres")
    assert dump is not None
    client = s3_server.client()
    data = bytearray(client.get_object(Bucket=s3_bucket, Key=dump.key)["Body"].read())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    client.put_object(Bucket=s3_bucket, Key=dump.key, Body=bytes(data))

    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket, "--run-id", "corrupt")
    result = _verdict(run, "Failed", "ChecksumMismatch")
    checksum = next(c for c in result["checks"] if c["kind"] == "Checksum")
    assert checksum["passed"] is False
    assert checksum["expected"] == dump.sha256 and checksum["actual"] != dump.sha256
    assert dump.key in result["message"]
    # Nothing restored from a corrupt archive counts as verified.
    assert [c["kind"] for c in result["checks"]] == ["Checksum"]
    assert "rtoSeconds" not in result
    report = _report(s3_server, s3_bucket, result)
    assert report["verdict"] == "Failed" and report["reason"] == "ChecksumMismatch"
    assert result["reportLocation"].endswith(f"/{manifest.run_id}/drills/corrupt.json")


def test_a_table_missing_from_the_restored_data_fails_the_row_count_check(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    """The manifest says shop.invoices had rows and orders had one more: the restore has neither."""
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    assert manifest.postgres is not None
    manifest.postgres.row_counts["shop.invoices"] = 12
    manifest.postgres.row_counts["shop.orders"] += 1
    _store(s3_server, s3_bucket).write_manifest(manifest)

    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket)
    result = _verdict(run, "Failed", "CheckFailed")
    failing = [c for c in result["checks"] if not c["passed"]]
    # Failing checks come first, each naming its table.
    assert result["checks"][: len(failing)] == failing
    assert [(c["kind"], c["name"]) for c in failing] == [
        ("RowCount", "shop.invoices"), ("RowCount", "shop.orders"),
    ]
    assert failing[0]["expected"] == "12" and "missing" in failing[0]["message"]
    assert (failing[1]["expected"], failing[1]["actual"]) == ("4001", "4000")
    assert "shop.invoices" in result["message"]
    assert result["checkSummary"]["failed"] == 2
    # The drill still measured how long the restore took.
    assert result["rtoSeconds"] >= 0
    assert _report(s3_server, s3_bucket, result)["reason"] == "CheckFailed"


def test_a_query_check_that_fails_is_named(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    checks = _checks_file(tmp_path, [
        {"name": "deleted-table", "sql": "SELECT count(*) FROM public.gone", "expected": "1"},
        {"name": "wrong-count", "sql": "SELECT count(*) FROM shop.customers",
         "expected": "501"},
        {"name": "read-only", "sql": "CREATE TABLE public.sneaky (i int)", "expectedRows": 0},
    ])
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--checks-file", checks)
    result = _verdict(run, "Failed", "CheckFailed")
    failing = {c["name"]: c for c in result["checks"] if not c["passed"]}
    assert set(failing) == {"deleted-table", "wrong-count", "read-only"}
    assert 'relation "public.gone" does not exist' in failing["deleted-table"]["message"]
    assert failing["wrong-count"]["actual"] == "500"
    # Checks run read-only: verifying never changes the restored data.
    assert "read-only transaction" in failing["read-only"]["message"]
    assert "public.sneaky" not in postgres_server.row_counts(scratch_database)


def test_an_rto_of_one_second_is_missed(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    started = datetime.now(UTC) - timedelta(seconds=5)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--started-at", _iso(started), "--rto-seconds", "1", "--rpo-seconds", "3600")
    result = _verdict(run, "Failed", "RTOMissed")
    assert result["reasons"] == ["RTOMissed"]
    assert result["rtoMet"] is False and result["rpoMet"] is True
    assert result["rtoSeconds"] > 5 and result["rtoObjectiveSeconds"] == 1
    assert all(c["passed"] for c in result["checks"])
    assert "exceeds the objective of 1s" in result["message"]


def test_an_rpo_objective_older_than_the_backup_is_missed(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    # A drill started two minutes after the backup, with a one-minute RPO.
    started = manifest.finished_at + timedelta(minutes=2)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--started-at", _iso(started), "--rpo-seconds", "60")
    result = _verdict(run, "Failed", "RPOMissed")
    assert result["rpoSeconds"] >= 120 and result["rpoMet"] is False


def test_the_rpo_of_a_drill_of_a_past_moment_runs_from_that_moment(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    """A drill of the tenant as it was at T lost what came after the backup up to
    T, not up to the drill's start (a drill of last month's state would miss any
    RPO objective otherwise)."""
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    moment = manifest.finished_at + timedelta(minutes=2)
    started = moment + timedelta(days=30)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--backup", f"before={_iso(moment)}", "--started-at", _iso(started),
                 "--rpo-seconds", "300")
    result = _verdict(run, "Passed")
    assert 120 <= result["rpoSeconds"] <= 300, result["rpoSeconds"]
    assert result["rpoMet"] is True


@pytest.mark.parametrize("selector", ["latest", "20260101T000000Z-abcdef", "before=2020-01-01"])
def test_no_backup_is_backup_not_found(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    selector: str,
    tmp_path: Path,
) -> None:
    if selector != "latest":
        _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    shims, invocations = recording_pg_bin_dir(postgres_server, tmp_path)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--pg-bin-dir", str(shims), "--backup", selector, "--run-id", "nothing")
    result = _verdict(run, "Failed", "BackupNotFound")
    assert "backupId" not in result and "rpoSeconds" not in result
    # Nothing restored (the shims record every client started, however short-lived;
    # the runner's look at its tools shows they are the ones it runs).
    recorded = recorded_invocations(invocations)
    assert recorded, "the runner started no client through the shims"
    assert not [argv for argv in recorded
                if Path(argv[0]).name == "pg_restore" and "--version" not in argv], recorded
    # The report goes under the tenant, outside any run a retention pass would see.
    assert result["reportLocation"] == f"s3://{s3_bucket}/stackforge/{TENANT}/drills/nothing.json"
    assert _report(s3_server, s3_bucket, result)["reason"] == "BackupNotFound"
    # Only the backup made above (none for "latest"), complete: the report made no run.
    listed = _store(s3_server, s3_bucket).list_runs(TENANT)
    assert len(listed) == (0 if selector == "latest" else 1), listed
    assert all(r.complete for r in listed), listed


def test_restore_into_a_missing_database_fails_with_the_stderr_tail(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    run = _drill(postgres_server, s3_server, "no_such_scratch", s3_bucket)
    result = _verdict(run, "Failed", "RestoreFailed")
    assert 'database "no_such_scratch" does not exist' in result["restoreLogTail"]
    assert 'database "no_such_scratch" does not exist' in result["message"]
    assert [(c["kind"], c["passed"]) for c in result["checks"]] == [("Checksum", True)]
    report = _report(s3_server, s3_bucket, result)
    assert report["restore"]["exitCode"] == 1
    assert "no_such_scratch" in report["restore"]["stderrTail"]


def test_restore_into_a_database_that_is_not_empty_fails(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    # The source itself: every CREATE collides, and --exit-on-error stops at the first.
    run = _drill(postgres_server, s3_server, seeded_database.name, s3_bucket)
    result = _verdict(run, "Failed", "RestoreFailed")
    assert "already exists" in result["restoreLogTail"]


def test_s3_unreachable_leaves_no_report(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket, endpoint=closed)
    result = _verdict(run, "Failed", "S3Unreachable")
    assert "reportLocation" not in result and "reportError" not in result


LATE_DATABASE_SECONDS = 12.0


@pytest.mark.parametrize("wait_seconds", [0, 30])
def test_a_scratch_database_that_accepts_connections_late_is_waited_for(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    wait_seconds: int,
) -> None:
    """The runner's pod can be refused a moment after the scratch pod is Ready (the
    node's Service rules, the NetworkPolicy enforcer): with --wait-seconds it asks
    again, and restores once the database accepts connections; without, the
    restore fails on the refusal."""
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    # Late enough that the runner gets there first: its start and its look into
    # S3 took 3 s and more on a slow day, when a 3 s opening came before it.
    with opening_after(LATE_DATABASE_SECONDS, "127.0.0.1", postgres_server.port) as late:
        run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                     "--wait-seconds", str(wait_seconds),
                     env={"PGHOST": "127.0.0.1", "PGPORT": str(late.port)})
    if wait_seconds:
        _verdict(run, "Passed")
        assert "waiting for the database to accept connections" in run.stderr, run.stderr
    else:
        result = _verdict(run, "Failed", "RestoreFailed")
        assert "Connection refused" in result["message"], result


def test_read_only_credentials_drill_but_cannot_store_the_report(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 env=s3_server.read_only_credentials.env())
    result = _verdict(run, "Passed")
    assert "reportLocation" not in result
    assert result["reportError"].startswith("S3AccessDenied")


def test_sigterm_mid_restore_stops_pg_restore_and_still_reports(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    """What activeDeadlineSeconds or the sandbox's expiry does to the pod."""
    pg.seed_bulk(postgres_server, seeded_database.name, 100)
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    application = "stackforge-drill/pg_restore"
    signalled: list[int] = []

    def terminate_once_restoring(pid: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if postgres_server.backend_pids(application):
                os.kill(pid, signal.SIGTERM)
                signalled.append(pid)
                return
            time.sleep(0.01)

    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket, "--run-id", "stopped",
                 while_running=terminate_once_restoring)
    assert signalled, "pg_restore was never seen restoring"
    result = _verdict(run, "Failed", "Interrupted")
    assert "restoring" in result["message"]
    # pg_restore went with the runner: its session ends, nothing keeps writing.
    deadline = time.monotonic() + 10
    while postgres_server.backend_pids(application) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert postgres_server.backend_pids(application) == []
    assert result["reportLocation"].endswith(f"/{manifest.run_id}/drills/stopped.json")


# ---------------------------------------------------------------------- secrets


def test_no_secret_in_output_or_in_any_child_argv(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    pg.seed_bulk(postgres_server, seeded_database.name, 20)  # pg_restore lives long enough to see
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    checks = _checks_file(tmp_path, [{"name": "n", "sql": "SELECT 'check-sql-text'",
                                      "expected": "check-sql-text"}])
    runs = [_drill(postgres_server, s3_server, scratch_database, s3_bucket,
                   "--checks-file", checks)]
    _verdict(runs[0], "Passed")
    # Failures print messages from libpq and boto3: those must be clean too.
    runs.append(_drill(postgres_server, s3_server, scratch_database, s3_bucket,
                       env={"PGPASSWORD": "wrong-pg-password-123"}))
    runs.append(_drill(postgres_server, s3_server, scratch_database, s3_bucket,
                       env=S3Credentials(s3_server.credentials.access_key_id,
                                         "wrong-aws-secret-456").env()))
    assert [r.result["reason"] for r in runs[1:]] == ["RestoreFailed", "S3AuthenticationFailed"]
    assert "password authentication failed" in runs[1].result["restoreLogTail"]
    secrets = [postgres_server.password, s3_server.credentials.secret_access_key,
               "wrong-pg-password-123", "wrong-aws-secret-456"]
    connection = [str(postgres_server.port), scratch_database, "127.0.0.1"]
    for run in runs:
        for secret in secrets:
            assert secret not in run.stdout
            assert secret not in run.stderr
        # A child caught between fork and exec still shows its parent's command line.
        for argv in (a for a in run.children_argv if a != run.argv):
            joined = " ".join(argv)
            # The SQL travels on psql's stdin, not in its arguments.
            for value in [*secrets, *connection, "check-sql-text"]:
                assert value not in joined, f"{value!r} in child argv {argv}"
    # The sampler saw the runner's clients (so the loop above checked something). Not
    # each of them: a small restore can start and end between two samples on a busy
    # machine.
    seen = [" ".join(argv) for argv in runs[0].children_argv]
    assert any("pg_restore" in a or "psql" in a for a in seen), seen


# ---------------------------------------------------------------------- the SQL checks' login

CHECK_ROLES = ("SELECT count(*) FROM pg_roles "
               r"WHERE rolname LIKE 'stackforge\_drill\_checks\_%'")
# What a check's SQL tried in order to read the scratch server's environment,
# which in a physical drill holds the bucket's secret key and the cipher
# passphrase: as the superuser each of them ran, and environ-program answered
# with the server's PATH. (A backend's own /proc/self/environ shows only the
# zeros of its process title, but any file the server can read was readable.)
HOSTILE_CHECKS: list[dict[str, Any]] = [
    {"name": "environ-file", "expected": "nothing",
     "sql": "SELECT encode(pg_read_binary_file('/proc/self/environ'), 'escape')"},
    {"name": "environ-copy", "expected": "nothing",
     "sql": "SET TRANSACTION READ WRITE; CREATE TEMP TABLE e (line text); "
            "COPY e FROM '/proc/self/environ'; SELECT line FROM e"},
    {"name": "environ-program", "expected": "nothing",
     "sql": "SET TRANSACTION READ WRITE; CREATE TEMP TABLE e (line text); "
            "COPY e FROM PROGRAM 'env | grep ^PATH='; SELECT line FROM e"},
    {"name": "program", "expectedRows": 0, "sql": "COPY (SELECT 1) TO PROGRAM 'true'"},
    # The roles' password hashes (a member of pg_read_all_data reads them).
    {"name": "password-hashes", "expected": "nothing",
     "sql": "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"},
]
HOSTILE = {"environ-file", "environ-copy", "environ-program", "program", "password-hashes"}
# Every ACL of the database's tables, sequences and schemas, as text.
ACLS = ("SELECT string_agg(format('%s %s', oid::regclass, relacl), ', ' ORDER BY oid) "
        "FROM pg_class WHERE relnamespace NOT IN ('pg_catalog'::regnamespace, "
        "'information_schema'::regnamespace, 'pg_toast'::regnamespace) "
        "UNION ALL SELECT string_agg(format('%s %s', nspname, nspacl), ', ' ORDER BY oid) "
        "FROM pg_namespace")


def _checks_file(tmp_path: Path, checks: list[dict[str, Any]]) -> str:
    path = tmp_path / "checks.json"
    path.write_text(json.dumps(checks))
    return str(path)


def _check_roles_left(postgres: pg.PostgresServer) -> int:
    return int(postgres.psql(CHECK_ROLES).strip())


def _no_environment_in(run: RunnerProcess, *texts: str) -> None:
    """Nothing of the server's environment (its PATH is this process's) anywhere."""
    for text in (run.stdout, run.stderr, *texts):
        assert "PATH=" not in text and os.environ["PATH"] not in text


def test_sql_checks_log_in_as_a_role_that_reads_tables_and_nothing_of_the_server(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    checks = _checks_file(tmp_path, [
        {"name": "orders", "sql": "SELECT count(*) FROM shop.orders", "expected": "4000"},
        *HOSTILE_CHECKS,
        # A role of its own, not SET ROLE: RESET ROLE is still not the superuser.
        {"name": "reset-role", "sql": "RESET ROLE; SELECT current_setting('is_superuser')",
         "expected": "off"},
        {"name": "no-file-roles", "expected": "0",
         "sql": "SELECT count(*) FROM unnest(ARRAY['pg_read_server_files', "
                "'pg_write_server_files', 'pg_execute_server_program']) AS r "
                "WHERE pg_has_role(r, 'MEMBER')"},
        {"name": "no-attributes", "expected": "false",
         "sql": "SELECT (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication)::text "
                "FROM pg_roles WHERE rolname = session_user"},
        # Another database: the role reaches it too; a missing one fails alone.
        {"name": "elsewhere", "sql": "SELECT current_database()", "database": "postgres",
         "expected": "postgres"},
        {"name": "nowhere", "sql": "SELECT 1", "database": "no_such_database",
         "expected": "1"},
        # The statement timeout still holds for the role's sessions.
        {"name": "slow", "sql": "SELECT pg_sleep(5)", "expectedRows": 1},
        # A check that sets it aside is given up on by the runner, and its
        # session ended with the role.
        {"name": "timeout-aside", "expectedRows": 1,
         "sql": "SET statement_timeout = 0; SELECT pg_sleep(60)"},
    ])
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--checks-file", checks, "--query-timeout-seconds", "1")
    result = _verdict(run, "Failed", "CheckFailed")
    found = {c["name"]: c for c in result["checks"] if c["kind"] == "Query"}
    failed = {name for name, c in found.items() if not c["passed"]}
    assert failed == {*HOSTILE, "nowhere", "slow", "timeout-aside"}, json.dumps(found, indent=1)
    assert "permission denied for function pg_read_binary_file" in \
        found["environ-file"]["message"]
    assert "pg_read_server_files" in found["environ-copy"]["message"]
    for name in ("environ-program", "program"):
        assert "pg_execute_server_program" in found[name]["message"], found[name]
    assert "permission denied for table pg_authid" in found["password-hashes"]["message"]
    assert 'database "no_such_database" does not exist' in found["nowhere"]["message"]
    assert "statement timeout" in found["slow"]["message"]
    assert found["timeout-aside"]["message"].startswith("no answer within 6 s"), found
    assert run.seconds < 40, run.seconds
    # Its session did not outlive the run (the drop ended it).
    assert postgres_server.psql(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'stackforge-drill/checks'").strip() == "0"
    assert not any(found[name].get("actual") for name in HOSTILE), found
    # The runner's own checks stay the superuser's: every row counted.
    assert all(c["passed"] for c in result["checks"] if c["kind"] == "RowCount")
    report = _report(s3_server, s3_bucket, result)
    _no_environment_in(run, json.dumps(report))
    # The role is gone again.
    assert _check_roles_left(postgres_server) == 0


def test_a_physical_drills_checks_log_in_as_their_own_role_too(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """The restored database is verified where it is (here the seeded one, a
    primary: promoted, nothing replayed), its checks as the checks' role."""
    checks = _checks_file(tmp_path, [
        {"name": "orders", "sql": "SELECT count(*) FROM shop.orders", "expected": "4000"},
        *HOSTILE_CHECKS,
    ])
    run = _drill(postgres_server, s3_server, seeded_database.name, s3_bucket,
                 "--recovery-target", "latest", "--repository", "/repo",
                 "--checks-file", checks)
    result = _verdict(run, "Failed", "CheckFailed")
    outcome = {c["name"]: c["passed"] for c in result["checks"]}
    assert outcome == {"connectivity": True, "recovery": True, "orders": True,
                       **dict.fromkeys(HOSTILE, False)}, result["checks"]
    _no_environment_in(run, json.dumps(_report(s3_server, s3_bucket, result)))
    assert _check_roles_left(postgres_server) == 0


def test_checks_in_a_tenants_own_database_read_all_data_and_leave_its_acls_as_they_were(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """An in-place recovery's verification (--checks-read all-data): a grant per
    schema would leave the tables' default ACLs spelled out after its revoke."""
    before = postgres_server.psql(ACLS, seeded_database.name)
    checks = _checks_file(tmp_path, [
        {"name": "orders", "sql": "SELECT count(*) FROM shop.orders", "expected": "4000"},
        {"name": "reads-all-data", "sql": "SELECT pg_has_role('pg_read_all_data', 'MEMBER')::text",
         "expected": "true"},
        {"name": "no-file-roles", "expected": "0",
         "sql": "SELECT count(*) FROM unnest(ARRAY['pg_read_server_files', "
                "'pg_execute_server_program']) AS r WHERE pg_has_role(r, 'MEMBER')"},
    ])
    run = _drill(postgres_server, s3_server, seeded_database.name, s3_bucket,
                 "--recovery-target", "latest", "--repository", "/repo",
                 "--checks-file", checks, "--checks-read", "all-data")
    result = _verdict(run, "Passed", None)
    assert {c["name"] for c in result["checks"] if c["passed"]} >= {
        "orders", "reads-all-data", "no-file-roles"}, result["checks"]
    assert postgres_server.psql(ACLS, seeded_database.name) == before
    assert _check_roles_left(postgres_server) == 0


@pytest.mark.parametrize(("grant", "sql", "refusal"), [
    # A restored database may grant what reads files to PUBLIC.
    ("GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO PUBLIC",
     "SELECT encode(pg_read_binary_file('/proc/self/environ'), 'escape')",
     "may execute pg_read_binary_file(text)"),
    # A SECURITY DEFINER function of the superuser runs as the superuser for
    # whoever calls it (PUBLIC, unless revoked).
    ("CREATE FUNCTION public.peek(path text) RETURNS bytea LANGUAGE sql SECURITY DEFINER "
     "AS $$ SELECT pg_read_binary_file(path) $$",
     "SELECT encode(public.peek('/proc/self/environ'), 'escape')",
     "may execute public.peek(text), which runs as "),
], ids=["granted-to-public", "security-definer"])
def test_no_check_runs_where_the_role_could_read_server_files(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
    grant: str,
    sql: str,
    refusal: str,
) -> None:
    """Where the restored database lets the role read the server's files, no check
    runs (in that database; another one's do)."""
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    postgres_server.psql(grant, scratch_database)
    checks = _checks_file(tmp_path, [
        {"name": "environ", "expected": "nothing", "sql": sql},
        {"name": "elsewhere", "sql": "SELECT 1", "database": "postgres", "expected": "1"},
    ])
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--checks-file", checks)
    result = _verdict(run, "Failed", "CheckFailed")
    found = {c["name"]: c for c in result["checks"] if c["kind"] == "Query"}
    assert not found["environ"]["passed"] and found["elsewhere"]["passed"], found
    assert found["environ"]["message"].startswith(
        f"not run: the checks' login role {refusal}"), found
    assert "actual" not in found["environ"], found
    _no_environment_in(run, json.dumps(_report(s3_server, s3_bucket, result)))
    assert _check_roles_left(postgres_server) == 0


def test_with_checksum_off_the_dump_is_not_compared_with_the_manifest(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    """spec.checks.checksum: false (--no-checksum): a manifest whose hash is wrong
    fails no drill, and no Checksum check is reported."""
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    dump = manifest.artifact("postgres")
    assert dump is not None
    read = dump.sha256
    dump.sha256 = "0" * 64
    _store(s3_server, s3_bucket).write_manifest(manifest)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket, "--no-checksum")
    result = _verdict(run, "Passed")
    assert "Checksum" not in {c["kind"] for c in result["checks"]}
    assert _report(s3_server, s3_bucket, result)["restore"]["sha256"] == read


# ---------------------------------------------------------------------- into a tenant's database


def test_keep_owners_restores_owners_grants_and_the_missing_roles_and_writes_no_report(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    owner, reader = (f"own_{uuid.uuid4().hex[:6]}", f"read_{uuid.uuid4().hex[:6]}")
    names = {"owner": owner, "reader": reader}
    postgres_server.psql('CREATE ROLE :"owner" NOLOGIN; CREATE ROLE :"reader" NOLOGIN;'
                         'ALTER TABLE shop.orders OWNER TO :"owner";'
                         'GRANT SELECT ON shop.customers TO :"reader";',
                         seeded_database.name, variables=names)
    acl = "SELECT pg_get_userbyid(relowner) || ' ' || relacl::text FROM pg_class WHERE oid = {}"
    before = [postgres_server.psql(acl.format(f"'shop.{t}'::regclass"), seeded_database.name)
              for t in ("orders", "customers")]
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    assert manifest.postgres is not None and {owner, reader} <= set(manifest.postgres.roles)
    drop_roles = 'DROP DATABASE IF EXISTS :"db" WITH (FORCE); DROP ROLE IF EXISTS :"owner";' \
                 'DROP ROLE IF EXISTS :"reader";'
    # Gone from the cluster, as in a new tenant that never had them.
    postgres_server.psql(drop_roles, variables={**names, "db": seeded_database.name})
    objects = sorted(o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=s3_bucket).get("Contents", []))
    try:
        _restore_keeping_owners(postgres_server, s3_server, scratch_database, s3_bucket,
                                names, before, objects, seeded_database.row_counts)
    finally:
        postgres_server.psql(drop_roles, variables={**names, "db": scratch_database})


def _restore_keeping_owners(postgres_server: pg.PostgresServer, s3_server: S3Server,
                            scratch_database: str, s3_bucket: str, names: dict[str, str],
                            before: list[str], objects: list[str],
                            rows: dict[str, int]) -> None:
    owner, reader = names["owner"], names["reader"]
    acl = "SELECT pg_get_userbyid(relowner) || ' ' || relacl::text FROM pg_class WHERE oid = {}"
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--keep-owners", "--no-report")
    result = _verdict(run, "Passed")
    roles = next(c for c in result["checks"] if c["kind"] == "Roles")
    assert roles["passed"] and owner in roles["message"] and reader in roles["message"], roles
    assert [postgres_server.psql(acl.format(f"'shop.{t}'::regclass"), scratch_database)
            for t in ("orders", "customers")] == before
    assert postgres_server.psql(
        "SELECT string_agg(rolcanlogin::text, ',') FROM pg_roles WHERE rolname IN "
        "(:'owner', :'reader')", variables=names).strip() == "false,false"
    assert postgres_server.row_counts(scratch_database) == rows
    # The bucket is another tenant's: nothing written into it.
    assert "reportLocation" not in result
    assert sorted(o["Key"] for o in s3_server.client().list_objects_v2(
        Bucket=s3_bucket).get("Contents", [])) == objects


def test_a_keep_owners_restore_that_fails_leaves_the_database_as_it_was(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    # One table of the dump is there already: the restore collides with it.
    postgres_server.psql("CREATE SCHEMA shop; CREATE TABLE shop.orders (id int);",
                         scratch_database)
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--keep-owners", "--no-report")
    result = _verdict(run, "Failed", "RestoreFailed")
    assert "already exists" in result["restoreLogTail"]
    # One transaction: nothing of the dump stayed beside what was there.
    assert postgres_server.row_counts(scratch_database) == {"shop.orders": 0}


def test_a_keep_owners_restore_of_a_dump_not_matching_its_manifest_commits_nothing(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
) -> None:
    """The object is a readable dump, but not the one the manifest describes (its
    hash differs): restored in one transaction and compared afterwards, its rows
    were committed into the tenant's database before the run failed."""
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    client = s3_server.client()
    [key] = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]
             if o["Key"].endswith(f"{manifest.run_id}/manifest.json")]
    recorded = json.loads(client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    for artifact in recorded["artifacts"]:
        if artifact["name"] == "postgres":
            artifact["sha256"] = "0" * 64
    client.put_object(Bucket=s3_bucket, Key=key, Body=json.dumps(recorded).encode())

    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--keep-owners", "--no-report")
    result = _verdict(run, "Failed", "ChecksumMismatch")
    checksum = next(c for c in result["checks"] if c["kind"] == "Checksum")
    assert checksum["passed"] is False and checksum["expected"] == "0" * 64, checksum
    # The transaction never saw the archive's end: nothing of it stayed.
    assert postgres_server.row_counts(scratch_database) == {}


# A function the database's owner may make (public is the owner's): a closer
# match for format('...%I.%I', name, name) than pg_catalog.format(text, VARIADIC
# "any"). Called by a superuser's session, it runs with the superuser's rights.
STAND_IN_FORMAT = """
CREATE FUNCTION public.format(text, name, name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'stand-in format called by %', current_user;
END $$;
"""


def test_the_superusers_sessions_never_call_a_function_the_owner_made_in_its_stead(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """The backup's row counts (in the tenant's database) and the drill's (in the
    restored copy, which holds whatever the tenant made) ran as the superuser with
    the default search path: public.format was called in pg_catalog.format's
    stead, with the superuser's rights (CVE-2018-1058's pattern)."""
    postgres_server.psql(STAND_IN_FORMAT, seeded_database.name)
    manifest = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    assert manifest.postgres is not None
    assert manifest.postgres.row_counts == seeded_database.row_counts
    checks = _checks_file(tmp_path, [
        {"name": "orders", "sql": "SELECT count(*) FROM shop.orders", "expected": "4000"}])
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--checks-file", checks)
    result = _verdict(run, "Passed")
    assert all(c["passed"] for c in result["checks"]), result["checks"]
    assert "stand-in" not in run.stdout + run.stderr


def test_a_checks_sql_stays_one_query_where_backslashes_escape_quotes(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    scratch_database: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """The database's owner may set standard_conforming_strings off: psql then read
    a backslash before a quote as escaping it, a check's SQL (quoted by doubling
    its quotes) ended its literal, and the rest ran as psql's own commands: a
    shell, with the runner's environment and the bucket's keys in it."""
    marker = tmp_path / "shell-ran"
    _backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    postgres_server.psql(f"ALTER DATABASE {scratch_database} SET standard_conforming_strings "
                         "= off")
    checks = _checks_file(tmp_path, [
        {"name": "breakout", "sql": f"SELECT '\\'; \\! touch {marker} #", "expectedRows": 1},
        {"name": "orders", "sql": "SELECT count(*) FROM shop.orders", "expected": "4000"}])
    run = _drill(postgres_server, s3_server, scratch_database, s3_bucket,
                 "--checks-file", checks)
    assert not marker.exists(), "a check's SQL ran a shell command"
    result = json.loads(json.dumps(run.result))
    found = {c["name"]: c for c in result["checks"] if c["kind"] == "Query"}
    assert found["orders"]["passed"], found
