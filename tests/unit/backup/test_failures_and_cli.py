"""Failure reasons, redaction, and the ``backup run`` command line (no servers needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from stackforge_operator.backup import cli
from stackforge_operator.backup.failures import database_failure, redact, s3_failure
from stackforge_operator.backup.postgres import PgDump, SnapshotSession
from stackforge_operator.backup.runner import BackupRequest
from stackforge_operator.backup.store import MiB, StoreConfig
from stackforge_operator.models.backup import BackupTarget, ObjectStorage, SSEAlgorithm


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutObject")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "S3Unreachable"),
        (_client_error("InvalidAccessKeyId"), "S3AuthenticationFailed"),
        (_client_error("SignatureDoesNotMatch"), "S3AuthenticationFailed"),
        (_client_error("AccessDenied"), "S3AccessDenied"),
        (_client_error("NoSuchBucket"), "S3BucketNotFound"),
        (_client_error("InternalError"), "S3Error"),
    ],
)
def test_s3_failures_are_named(exc: Exception, reason: str) -> None:
    assert s3_failure(exc, "uploading").reason == reason


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ('psql: error: connection to server at "127.0.0.1", port 1 failed: Connection refused',
         "DatabaseUnreachable"),
        ('psql: error: connection to server at "h", port 5432 failed: FATAL:  password '
         'authentication failed for user "app"', "DatabaseAuthenticationFailed"),
        ('psql: error: connection to server at "h", port 5432 failed: FATAL:  database "x" '
         "does not exist", "DatabaseNotFound"),
        ("ERROR:  canceling statement due to lock timeout", "DatabaseError"),
    ],
)
def test_database_failures_are_named(stderr: str, reason: str) -> None:
    assert database_failure(stderr, "reading").reason == reason


def test_redact_removes_secrets_and_bounds_length() -> None:
    text = "failed with hunter2-secret in it " + "x" * 5000
    out = redact(text, ["hunter2-secret"])
    assert "hunter2-secret" not in out and "<redacted>" in out
    assert len(out) <= 1000


def test_child_argv_never_carries_the_connection() -> None:
    env = {"PGHOST": "db.internal", "PGPORT": "6543", "PGUSER": "app",
           "PGPASSWORD": "s3cret-pw", "PGDATABASE": "appdb"}
    dump = PgDump("/usr/bin/pg_dump", env, snapshot="00000003-00000002-1", lock_timeout_ms=1000)
    session = SnapshotSession("/usr/bin/psql", env, lock_timeout_ms=1000)
    for argv in (dump.argv, session.argv):
        joined = " ".join(argv)
        for value in env.values():
            assert value not in joined


def _parse(*argv: str) -> BackupRequest:
    parser = cli.build_parser()
    return cli.request_from_args(parser.parse_args(list(argv)), parser)


BASE = ("--tenant", "acme", "--bucket", "backups")


def test_defaults_back_up_postgres_only() -> None:
    request = _parse(*BASE)
    assert request.targets == {BackupTarget.POSTGRES}
    assert request.store == StoreConfig(bucket="backups")
    assert request.part_size == 8 * MiB
    assert request.connect_wait_seconds == 0


def test_the_connect_wait_is_read() -> None:
    assert _parse(*BASE, "--connect-wait-seconds", "20").connect_wait_seconds == 20


def test_inputs_imply_targets(tmp_path: Path) -> None:
    request = _parse(*BASE, "--config-file", str(tmp_path / "c.json"),
                     "--grafana-url", "http://grafana:3000")
    assert request.targets == set(BackupTarget)


@pytest.mark.parametrize(
    "argv",
    [
        ("--targets", "Configuration"),
        ("--targets", "GrafanaDashboards"),
        ("--targets", "Nope"),
        ("--sse", "aws:kms"),
        ("--sse", "AES256", "--kms-key-id", "k"),
        ("--part-size-mib", "4"),
        ("--connect-wait-seconds", "-1"),
    ],
)
def test_bad_flags_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*BASE, *argv)
    assert exc.value.code == 2


def test_no_flag_takes_a_secret() -> None:
    flags = {a.dest for a in cli.build_parser()._actions if isinstance(a, argparse.Action)}
    assert not any(word in flag for flag in flags for word in ("password", "secret", "token"))


def test_store_config_from_the_policy_model() -> None:
    storage = ObjectStorage.model_validate({
        "bucket": "backups", "prefix": "sf/prod", "endpoint": "http://minio:9000",
        "forcePathStyle": True,
        "serverSideEncryption": {"algorithm": "aws:kms", "kmsKeyId": "arn:aws:kms:k"},
    })
    config = StoreConfig.from_policy(storage)
    assert config.run_prefix("acme", "r") == "sf/prod/acme/r/"
    assert config.sse == SSEAlgorithm.KMS
    assert config.sse_args() == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:k"}


def test_the_result_is_found_in_a_log_tail() -> None:
    from stackforge_operator.backup.runner import parse_result

    tail = (
        "2026-11-27 02:00:01 INFO streaming pg_dump into s3://b/k\n"
        '{"result":"Failed","tenant":"acme","runId":"r","reason":"PgDumpFailed","message":"m"}\n'
        "{not json\n"
    )
    assert parse_result(tail) == {
        "result": "Failed", "tenant": "acme", "runId": "r", "reason": "PgDumpFailed",
        "message": "m",
    }
    assert parse_result("INFO only logs\n") is None
    assert parse_result('{"some": "other json"}') is None


@pytest.mark.parametrize(
    ("tenant", "run_id", "reason"),
    [("Acme/../x", None, "InvalidArguments"), ("acme", "latest", "InvalidRunId")],
)
def test_bad_names_fail_before_anything_is_touched(
    tenant: str, run_id: str | None, reason: str
) -> None:
    from stackforge_operator.backup.runner import run_backup

    # Port 9 (discard) on loopback: nothing listens, so any S3 call would fail differently.
    store = StoreConfig(bucket="backups", endpoint="http://127.0.0.1:9", max_attempts=1)
    outcome = run_backup(BackupRequest(tenant=tenant, store=store, run_id=run_id), env={})
    assert (outcome.result, outcome.reason) == ("Failed", reason)
