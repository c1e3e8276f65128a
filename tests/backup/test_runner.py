"""The backup runner as a Job's pod runs it, against a real PostgreSQL and a real S3 server.

Every run here is ``python -m stackforge_operator.backup.cli`` as a child
process with its configuration in flags and its secrets in the environment,
exactly as the CronJob's container runs ``stackforge-operator backup run``.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.backup.store import BackupStore, StoreConfig
from stackforge_operator.devcluster.ports import free_port
from tests.support import postgres_server as pg
from tests.support.fault_proxy import opening_after
from tests.support.fixtures_backup import (
    RunnerProcess,
    SeededDatabase,
    recorded_invocations,
    recording_pg_bin_dir,
    run_runner,
    runner_argv,
)
from tests.support.grafana_api import GrafanaAPI
from tests.support.s3_fault_proxy import S3FaultProxy
from tests.support.s3_server import S3Credentials, S3Server, multipart_uploads, object_sha256s

TENANT = "acme"


def _store(s3: S3Server, bucket: str) -> BackupStore:
    return BackupStore(StoreConfig(bucket=bucket), client=s3.client())


def _backup(
    postgres: pg.PostgresServer,
    s3: S3Server,
    database: str,
    bucket: str,
    *extra: str,
    env: dict[str, str] | None = None,
    endpoint: str | None = None,
    run_id: str | None = None,
    **kwargs: Any,
) -> RunnerProcess:
    argv = runner_argv(
        tenant=TENANT, bucket=bucket, endpoint=endpoint or s3.endpoint, run_id=run_id,
        extra=["--pg-bin-dir", str(postgres.bin_dir), *extra],
    )
    process_env = pg.env_for(postgres, database, s3.env())
    process_env.update(env or {})
    return run_runner(argv, process_env, **kwargs)


def _succeeded(run: RunnerProcess) -> dict[str, Any]:
    assert run.returncode == 0, f"runner failed:\n{run.stdout}\n{run.stderr}"
    result = run.result
    assert result["result"] == "Succeeded"
    return result


def _restore(postgres: pg.PostgresServer, dump: Path) -> str:
    target = postgres.create_database(f"restore_{dump.stem[-6:]}_{int(time.time() * 1000)}")
    import subprocess

    subprocess.run(
        [postgres.bin("pg_restore"), "--no-owner", "--exit-on-error",
         "-h", str(postgres.socket_dir), "-p", str(postgres.port), "-U", postgres.superuser,
         "-d", target, str(dump)],
        check=True, capture_output=True,
    )
    return target


# ---------------------------------------------------------------------- end to end


def test_backup_uploads_a_verified_dump_that_restores_the_rows(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    configuration = {"apiVersion": "v1", "kind": "List", "items": [{"kind": "Namespace"}]}
    config_file = tmp_path / "configuration.json"
    config_file.write_text(json.dumps(configuration))
    dashboards = [{"uid": f"d{i}", "title": f"Dashboard {i}", "panels": []} for i in range(3)]
    with GrafanaAPI("grafana-token-0123", dashboards) as grafana:
        run = _backup(
            postgres_server, s3_server, seeded_database.name, s3_bucket,
            "--config-file", str(config_file), "--grafana-url", grafana.url,
            env={"GRAFANA_TOKEN": "grafana-token-0123"},
        )
    result = _succeeded(run)

    store = _store(s3_server, s3_bucket)
    manifest = store.read_manifest(TENANT, result["runId"])
    assert manifest is not None
    assert result["sha256"] == manifest.artifact("postgres").sha256  # type: ignore[union-attr]
    assert [a.name for a in manifest.artifacts] == ["configuration", "grafana", "postgres"]
    assert manifest.postgres is not None
    assert manifest.postgres.row_counts == seeded_database.row_counts
    assert manifest.postgres.short_version == postgres_server.version().split()[2]
    # Which database it is: retention tells a database made afresh by it.
    assert manifest.postgres.system_identifier == postgres_server.psql(
        "SELECT system_identifier FROM pg_control_system()").strip()
    assert manifest.tools["pg_dump"].startswith("pg_dump (PostgreSQL)")

    # Every artifact: downloaded bytes hash to what the manifest says.
    for artifact in manifest.artifacts:
        path = tmp_path / artifact.key.rsplit("/", 1)[1]
        with path.open("wb") as sink:
            assert store.download(artifact.key, sink) == artifact.sha256
        assert path.stat().st_size == artifact.size_bytes
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
    assert json.loads((tmp_path / "configuration.json").read_text()) == configuration
    exported = json.loads((tmp_path / "grafana-dashboards.json").read_text())
    assert [d["dashboard"] for d in exported["dashboards"]] == dashboards

    # The dump restores into an empty database with the same rows.
    restored = _restore(postgres_server, tmp_path / "postgres.dump")
    try:
        assert postgres_server.row_counts(restored) == seeded_database.row_counts
        for table in ("customers", "orders"):
            assert postgres_server.table_checksum(
                restored, "shop", table
            ) == postgres_server.table_checksum(seeded_database.name, "shop", table)
    finally:
        postgres_server.drop_database(restored)

    assert multipart_uploads(s3_server.client(), s3_bucket) == []
    assert result["location"] == f"s3://{s3_bucket}/stackforge/{TENANT}/{result['runId']}/"


def test_row_counts_come_from_the_dumped_snapshot(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    """Rows written while the dump runs are in neither the dump nor the counts."""
    pg.seed_bulk(postgres_server, seeded_database.name, 40)
    before = postgres_server.row_counts(seeded_database.name)

    def write_during_dump(_pid: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if postgres_server.backend_pids("stackforge-backup/pg_dump"):
                postgres_server.psql(
                    "INSERT INTO public.audit_log (line) SELECT 'late' FROM generate_series(1, 77)",
                    seeded_database.name,
                )
                return
            time.sleep(0.01)

    run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                  while_running=write_during_dump)
    result = _succeeded(run)
    manifest = _store(s3_server, s3_bucket).read_manifest(TENANT, result["runId"])
    assert manifest is not None and manifest.postgres is not None
    assert manifest.postgres.row_counts == before
    assert postgres_server.row_counts(seeded_database.name)["public.audit_log"] == (
        before["public.audit_log"] + 77
    )
    dump = tmp_path / "postgres.dump"
    with dump.open("wb") as sink:
        _store(s3_server, s3_bucket).download(manifest.artifact("postgres").key, sink)  # type: ignore[union-attr]
    restored = _restore(postgres_server, dump)
    try:
        assert postgres_server.row_counts(restored) == before
    finally:
        postgres_server.drop_database(restored)


@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_objects_are_encrypted_as_the_policy_says(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    sse: str,
) -> None:
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/backup"
    kms = ["--kms-key-id", key_arn] if sse == "aws:kms" else []
    result = _succeeded(
        _backup(postgres_server, s3_server, seeded_database.name, s3_bucket, "--sse", sse, *kms)
    )
    s3 = s3_server.client()
    prefix = f"stackforge/{TENANT}/{result['runId']}/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["manifest.json", "postgres.dump"]
    for key in keys:
        head = s3.head_object(Bucket=s3_bucket, Key=key)
        assert head["ServerSideEncryption"] == sse
        if kms:
            assert head["SSEKMSKeyId"] == kms[1]


def test_a_second_run_with_the_same_id_leaves_the_backup_alone(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    first = _succeeded(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket))
    before = object_sha256s(s3_server.client(), s3_bucket, "stackforge/")
    again = _succeeded(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                               run_id=first["runId"]))
    assert again["alreadyComplete"] is True and again["sha256"] == first["sha256"]
    assert object_sha256s(s3_server.client(), s3_bucket, "stackforge/") == before


# ---------------------------------------------------------------------- failures


def _earlier_backup(
    postgres: pg.PostgresServer, s3: S3Server, database: str, bucket: str
) -> dict[str, str]:
    """A complete backup made before the failing run; returns its objects' sha256."""
    _succeeded(_backup(postgres, s3, database, bucket))
    objects = object_sha256s(s3.client(), bucket, "stackforge/")
    assert len(objects) == 2
    return objects


def _assert_failed_cleanly(
    run: RunnerProcess, reason: str, s3: S3Server, bucket: str, earlier: dict[str, str]
) -> dict[str, Any]:
    assert run.returncode == 1, f"expected a failed run:\n{run.stdout}\n{run.stderr}"
    result = run.result
    assert result["result"] == "Failed", result
    assert result["reason"] == reason, result
    assert result["message"]
    client = s3.client()
    # No manifest for the failed run, no upload left open, and the earlier
    # backup's objects are all there, byte for byte.
    assert object_sha256s(client, bucket, "stackforge/") == earlier
    prefix = f"stackforge/{TENANT}/{result['runId']}/"
    assert client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0
    assert multipart_uploads(client, bucket) == []
    store = _store(s3, bucket)
    assert [r.run_id for r in store.list_runs(TENANT) if not r.complete] == []
    return result


def test_s3_unreachable(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    closed = f"http://127.0.0.1:{free_port()}"
    shims, invocations = recording_pg_bin_dir(postgres_server, tmp_path)
    run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                  "--pg-bin-dir", str(shims), endpoint=closed)
    result = _assert_failed_cleanly(run, "S3Unreachable", s3_server, s3_bucket, earlier)
    assert closed in result["message"]
    # Nothing was dumped, or even asked of the database: the bucket is checked
    # first. (The shims record every client started, however short-lived.)
    assert recorded_invocations(invocations) == []


@pytest.mark.parametrize("which", ["wrong-secret", "unknown-key"])
def test_wrong_credentials(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    which: str,
) -> None:
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    good = s3_server.credentials
    bad = (
        S3Credentials(good.access_key_id, "x" * 40)
        if which == "wrong-secret"
        else S3Credentials("AKIAUNKNOWNUNKNOWN00", good.secret_access_key)
    )
    run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket, env=bad.env())
    result = _assert_failed_cleanly(run, "S3AuthenticationFailed", s3_server, s3_bucket, earlier)
    expected = "SignatureDoesNotMatch" if which == "wrong-secret" else "InvalidAccessKeyId"
    assert expected in result["message"]


def test_credentials_without_write_permission(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                  env=s3_server.read_only_credentials.env())
    _assert_failed_cleanly(run, "S3AccessDenied", s3_server, s3_bucket, earlier)


@pytest.mark.parametrize("wait_seconds", [0, 3])
def test_database_unreachable(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    wait_seconds: int,
) -> None:
    """Failed at once, or once ``--connect-wait-seconds`` of asking again are over."""
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                  "--connect-wait-seconds", str(wait_seconds), env={"PGPORT": str(free_port())})
    _assert_failed_cleanly(run, "DatabaseUnreachable", s3_server, s3_bucket, earlier)
    assert run.seconds >= wait_seconds, run.seconds
    assert ("asking again for up to" in run.stderr) == (wait_seconds > 0), run.stderr


def test_a_database_that_answers_within_the_connect_wait_is_backed_up(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    """A run that starts while nothing listens where the database will be (its
    primary restarting) asks again, and backs it up once it answers."""
    with opening_after(3.0, "127.0.0.1", postgres_server.port) as late:
        run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                      "--connect-wait-seconds", "30",
                      env={"PGHOST": "127.0.0.1", "PGPORT": str(late.port)})
    result = _succeeded(run)
    assert "asking again for up to" in run.stderr, run.stderr
    assert run.seconds >= 3, run.seconds
    assert late.accepted >= 1
    assert result["sha256"]


def test_database_wrong_password(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                  env={"PGPASSWORD": "not-the-password"})
    result = _assert_failed_cleanly(
        run, "DatabaseAuthenticationFailed", s3_server, s3_bucket, earlier
    )
    assert "not-the-password" not in run.stdout + run.stderr
    assert "password authentication failed" in result["message"]


def test_database_does_not_exist(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    run = _backup(postgres_server, s3_server, "no_such_database", s3_bucket)
    _assert_failed_cleanly(run, "DatabaseNotFound", s3_server, s3_bucket, earlier)


def _kill_when_parts_are_up(
    postgres: pg.PostgresServer, s3: S3Server, bucket: str, action: Any
) -> Any:
    """A ``while_running`` hook: once the dump's upload has a part stored, do ``action``."""
    client = s3.client()

    def hook(pid: int) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                parts = client.list_parts(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                ).get("Parts", [])
                if parts:
                    action(pid)
                    return
            time.sleep(0.02)
        raise AssertionError("the dump never got a part uploaded")

    return hook


def test_pg_dump_failing_mid_stream_aborts_the_upload(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    pg.seed_bulk(postgres_server, seeded_database.name, 120)
    killed: list[int] = []

    def kill_pg_dump_backend(_pid: int) -> None:
        killed.append(postgres_server.terminate_backends("stackforge-backup/pg_dump"))

    run = _backup(
        postgres_server, s3_server, seeded_database.name, s3_bucket, "--part-size-mib", "5",
        while_running=_kill_when_parts_are_up(
            postgres_server, s3_server, s3_bucket, kill_pg_dump_backend
        ),
    )
    assert killed == [1]
    result = _assert_failed_cleanly(run, "PgDumpFailed", s3_server, s3_bucket, earlier)
    assert "pg_dump exited 1" in result["message"]


def test_sigterm_mid_upload_aborts_it(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    """What activeDeadlineSeconds or an eviction does to the pod."""
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    pg.seed_bulk(postgres_server, seeded_database.name, 120)
    run = _backup(
        postgres_server, s3_server, seeded_database.name, s3_bucket, "--part-size-mib", "5",
        while_running=_kill_when_parts_are_up(
            postgres_server, s3_server, s3_bucket,
            lambda pid: __import__("os").kill(pid, signal.SIGTERM),
        ),
    )
    _assert_failed_cleanly(run, "Interrupted", s3_server, s3_bucket, earlier)


# ---------------------------------------------------------------------- secrets


def test_no_secret_in_output_or_in_any_child_argv(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    pg.seed_bulk(postgres_server, seeded_database.name, 20)  # pg_dump lives long enough to see
    token = "grafana-secret-token-7f3a9"
    config_file = tmp_path / "c.json"
    config_file.write_text("{}")
    # Every PostgreSQL client the runner starts goes through a shim that records its
    # argv: short-lived children (psql) are checked for sure, not only when sampled.
    shims, invocations = recording_pg_bin_dir(postgres_server, tmp_path)
    runs = []
    with GrafanaAPI(token, [{"uid": "a", "title": "A"}]) as grafana:
        extra = ("--config-file", str(config_file), "--grafana-url", grafana.url,
                 "--pg-bin-dir", str(shims))
        env = {"GRAFANA_TOKEN": token}
        runs.append(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                            *extra, env=env))
        _succeeded(runs[-1])
        # Failures print messages from libpq and boto3: those must be clean too.
        runs.append(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                            *extra, env={**env, "PGPASSWORD": "wrong-pg-password-123"}))
        runs.append(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                            *extra, env={**env, "AWS_SECRET_ACCESS_KEY": "wrong-aws-secret-456"}))
        runs.append(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                            *extra, env={"GRAFANA_TOKEN": "wrong-grafana-token-789"}))
    assert [r.result.get("reason") for r in runs] == [
        None, "DatabaseAuthenticationFailed", "S3AuthenticationFailed",
        "GrafanaAuthenticationFailed",
    ]
    secrets = [
        postgres_server.password, s3_server.credentials.secret_access_key, token,
        "wrong-pg-password-123", "wrong-aws-secret-456", "wrong-grafana-token-789",
    ]
    connection = [str(postgres_server.port), seeded_database.name, "127.0.0.1"]
    for run in runs:
        for secret in secrets:
            assert secret not in run.stdout
            assert secret not in run.stderr
        for argv in run.children_argv:
            if argv == run.argv:
                # A child caught between fork and exec still shows its parent's
                # (the runner's own, secret-free) arguments.
                continue
            joined = " ".join(argv)
            for value in secrets + connection:
                assert value not in joined, f"{value!r} in child argv {argv}"
    # The sampler saw the runner's children (so the loop above checked something); the
    # dump itself may come and go between two samples on a busy machine, so what it
    # was given is read from the shims' records.
    assert [argv for argv in runs[0].children_argv if argv != runs[0].argv], (
        "no child of the runner was ever seen running")
    recorded = [path.read_bytes().split(b"\0")[:-1] for path in invocations.iterdir()]
    assert {Path(argv[0].decode()).name for argv in recorded} >= {"pg_dump", "psql"}
    assert [argv for argv in recorded if b"--format=custom" in argv], recorded
    for shim_argv in recorded:
        joined = b" ".join(shim_argv).decode()
        for value in secrets + connection:
            assert value not in joined, f"{value!r} in {joined}"


# ---------------------------------------------------------------------- tolerance of the store


def test_runs_not_made_by_us_are_ignored(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key=f"stackforge/{TENANT}/README", Body=b"hi")
    client.put_object(Bucket=s3_bucket, Key=f"stackforge/{TENANT}/notes/x.txt", Body=b"hi")
    result = _succeeded(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket))
    runs = _store(s3_server, s3_bucket).list_runs(TENANT)
    assert [(r.run_id, r.complete) for r in runs] == [(result["runId"], True)]
    manifests = _store(s3_server, s3_bucket).manifests(TENANT)
    assert [m.run_id for m in manifests] == [result["runId"]]
    assert isinstance(manifests[0], Manifest)


def test_a_table_the_backup_role_may_not_read_is_the_reason_given(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
) -> None:
    """Found on the real node: the counting session fails on the table first, which
    ends the snapshot pg_dump imports; the run said only "invalid snapshot identifier"."""
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    database = seeded_database.name
    postgres_server.psql(
        "CREATE ROLE limited_backup LOGIN PASSWORD 'limited-backup-password';"
        'GRANT CONNECT ON DATABASE :"db" TO limited_backup;', variables={"db": database})
    # Everything readable but the one table made afterwards.
    postgres_server.psql("""
        DO $$ DECLARE s name; BEGIN
          FOR s IN SELECT nspname FROM pg_namespace
                   WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' LOOP
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO limited_backup', s);
            EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO limited_backup', s);
            EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO limited_backup', s);
          END LOOP;
        END $$;
        CREATE TABLE public.locked_away AS SELECT 1 AS n;""", database)
    run = _backup(postgres_server, s3_server, database, s3_bucket,
                  env={"PGUSER": "limited_backup", "PGPASSWORD": "limited-backup-password"})
    result = _assert_failed_cleanly(run, "DatabasePermissionDenied", s3_server, s3_bucket,
                                    earlier)
    assert "permission denied for table locked_away" in result["message"], result
    assert "limited-backup-password" not in run.stdout + run.stderr


# ---------------------------------------------------------------------- S3 faults


@pytest.mark.chaos
def test_an_s3_answering_503_now_and_then_and_slowly_is_ridden_out(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    tmp_path: Path,
    record_property: Any,
) -> None:
    """#17 case 8: every third request answered 503 SlowDown, every answer 0.2 s late;
    the run retries within its deadline and stores a dump that hashes as its
    manifest says (read from the server itself, not through the proxy)."""
    pg.seed_bulk(postgres_server, seeded_database.name, 20)
    with S3FaultProxy(s3_server.endpoint) as proxy:
        proxy.fail_every(3, 503)
        proxy.delay(0.2)
        run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                      "--part-size-mib", "5", endpoint=proxy.endpoint)
    result = _succeeded(run)
    assert proxy.failed >= 3, (proxy.requests, proxy.failed)
    store = _store(s3_server, s3_bucket)
    manifest = store.read_manifest(TENANT, result["runId"])
    assert manifest is not None
    dump = manifest.artifact("postgres")
    assert dump is not None
    with (tmp_path / "dump").open("wb") as sink:
        assert store.download(dump.key, sink) == dump.sha256
    assert multipart_uploads(s3_server.client(), s3_bucket) == []
    record_property("chaos", f"{proxy.failed} of {proxy.requests} S3 requests answered 503, "
                             f"all 0.2 s late: the run succeeded in {run.seconds:.1f} s with "
                             f"{dump.size_bytes // 2**20} MiB dumped, its sha256 verified")


@pytest.mark.chaos
def test_an_s3_failing_for_good_fails_the_run_with_a_reason_within_seconds(
    postgres_server: pg.PostgresServer,
    s3_server: S3Server,
    seeded_database: SeededDatabase,
    s3_bucket: str,
    record_property: Any,
) -> None:
    """#17 case 8: S3 answers 500 to everything once the dump's first part is stored.
    The run fails with the reason (after botocore's few retries, not hanging), leaves
    no manifest, and the next run, S3 healed, succeeds."""
    earlier = _earlier_backup(postgres_server, s3_server, seeded_database.name, s3_bucket)
    pg.seed_bulk(postgres_server, seeded_database.name, 20)
    with S3FaultProxy(s3_server.endpoint) as proxy:
        run = _backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                      "--part-size-mib", "5", endpoint=proxy.endpoint,
                      while_running=_kill_when_parts_are_up(
                          postgres_server, s3_server, s3_bucket,
                          lambda _pid: proxy.fail_all(500)))
        assert run.returncode == 1, f"{run.stdout}\n{run.stderr}"
        result = run.result
        assert result["result"] == "Failed" and result["reason"] == "S3Error", result
        assert "InternalError" in result["message"], result
        assert run.seconds < 60, run.seconds
        # Nothing of it counts: no manifest under its prefix (its upload may stay
        # open, as S3 refused the abort too: retention aborts old ones).
        keys = [o["Key"] for o in s3_server.client().list_objects_v2(
            Bucket=s3_bucket, Prefix=f"stackforge/{TENANT}/{result['runId']}/").get(
            "Contents", [])]
        assert not [k for k in keys if k.endswith("manifest.json")], keys
        assert {k: v for k, v in object_sha256s(s3_server.client(), s3_bucket,
                                                 "stackforge/").items()
                if k in earlier} == earlier
        proxy.heal()
        _succeeded(_backup(postgres_server, s3_server, seeded_database.name, s3_bucket,
                           endpoint=proxy.endpoint))
    record_property("chaos", f"S3 answering 500 to everything mid-upload: the run failed "
                             f"{result['reason']} after {run.seconds:.1f} s; no manifest; "
                             "the next run, S3 healed, succeeded")
