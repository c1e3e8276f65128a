"""BackupPolicy end to end: real control plane, real PostgreSQL, real S3 server.

The runner pod's command is run for real by a stand-in kubelet; the operator
sees an ordinary completed or failed Job and reads the truth from S3.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.backup_stack import (
    Stack,
    condition_of,
    get_policy,
    policy_manifest,
    run_backup,
)
from tests.support.clusters import ClusterHandle
from tests.support.postgres_server import PostgresServer
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually


def _manifest(s3: S3Server, bucket: str, tenant: str, run_id: str) -> dict[str, Any]:
    body = s3.client().get_object(Bucket=bucket, Key=f"backups/{tenant}/{run_id}/manifest.json")
    loaded: dict[str, Any] = json.loads(body["Body"].read())
    return loaded


def test_on_demand_backup_end_to_end(
    cluster: ClusterHandle, stack: Stack, s3_server: S3Server, postgres_server: PostgresServer,
    operator: OperatorProcess,
) -> None:
    ns = stack.namespace
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        policy_manifest("nightly", stack.tenant, ns, stack.bucket, s3_server.endpoint)))
    batch = client.BatchV1Api(cluster.api)
    cron = eventually(lambda: next(iter(batch.list_namespaced_cron_job(ns).items), None))
    assert cron.spec.schedule == "0 2 * * *" and cron.spec.time_zone == "Etc/UTC"
    assert cron.spec.concurrency_policy == "Forbid"
    container = cron.spec.job_template.spec.template.spec.containers[0]
    assert container.args[:2] == ["backup", "run"]
    # Credentials only by reference, never in arguments.
    by_name = {e.name: e for e in container.env}
    assert by_name["PGPASSWORD"].value_from.secret_key_ref.name == "postgres-credentials"
    assert by_name["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref.name == "s3-credentials"
    assert all(e.value is None for n, e in by_name.items() if "PASSWORD" in n or "SECRET" in n)

    ran = run_backup(cluster, stack, "nightly", "first")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.termination_message.strip().splitlines()[-1])
    run_id = result["runId"]

    def succeeded() -> dict[str, Any] | None:
        policy = get_policy(cluster, ns, "nightly")
        last = (policy.get("status") or {}).get("lastSuccessfulRun") or {}
        ok = condition_of(policy, "LastBackupSucceeded").get("status") == "True"
        return policy if ok and last.get("id") == run_id else None

    policy = eventually(succeeded, timeout=120)
    assert condition_of(policy, "BackupFresh")["status"] == "True"
    assert condition_of(policy, "Ready")["status"] == "True"
    assert policy["status"]["lastRun"]["id"] == run_id
    assert policy["status"]["nextScheduleTime"]

    # The dump in S3 matches its manifest, and restores the seeded rows.
    manifest = _manifest(s3_server, stack.bucket, stack.tenant, run_id)
    dump_entry = next(a for a in manifest["artifacts"] if a["name"] == "postgres")
    dump = s3_server.client().get_object(Bucket=stack.bucket, Key=dump_entry["key"])["Body"].read()
    assert hashlib.sha256(dump).hexdigest() == dump_entry["sha256"]
    assert policy["status"]["lastSuccessfulRun"]["sha256"] == dump_entry["sha256"]
    restored = f"{stack.database}_restored"
    postgres_server.create_database(restored)
    try:
        subprocess.run(
            [postgres_server.bin("pg_restore"), "--no-owner", "--no-privileges",
             "-h", str(postgres_server.socket_dir), "-p", str(postgres_server.port),
             "-U", postgres_server.superuser, "-d", restored],
            input=dump, check=True, capture_output=True)
        assert postgres_server.row_counts(restored) == stack.seeded
    finally:
        postgres_server.drop_database(restored)
    configuration = next(a for a in manifest["artifacts"] if a["name"] == "configuration")
    assert configuration["sizeBytes"] > 0

    # The tenant's BackupHealthy follows.
    tenant = tenants.wait_condition(cluster, stack.tenant, "BackupHealthy", "True", timeout=120)
    assert tenant["status"]["lastBackup"]["runId"] == run_id

    # Made stale (the manifest now says the backup finished three days ago)...
    manifest["finishedAt"] = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    s3_server.client().put_object(
        Bucket=stack.bucket, Key=f"backups/{stack.tenant}/{run_id}/manifest.json",
        Body=json.dumps(manifest).encode())
    eventually(lambda: condition_of(get_policy(cluster, ns, "nightly"), "BackupFresh")
               .get("reason") == "Stale", timeout=120)
    tenants.wait_condition(cluster, stack.tenant, "BackupHealthy", "False", timeout=120)

    # ... and fresh again after a new run.
    ran = run_backup(cluster, stack, "nightly", "second")
    assert ran.returncode == 0, ran.stderr
    eventually(lambda: condition_of(get_policy(cluster, ns, "nightly"), "BackupFresh")
               .get("status") == "True", timeout=120)
    tenants.wait_condition(cluster, stack.tenant, "BackupHealthy", "True", timeout=120)

    # No credential in the operator's log (it reads the S3 keys to list the bucket)
    # nor in the runner's argument list.
    pg_password = base64.b64decode(client.CoreV1Api(cluster.api).read_namespaced_secret(
        "postgres-credentials", stack.namespace).data["password"]).decode()
    secret_values = [s3_server.credentials.secret_access_key, pg_password]
    log = operator.process.log_path.read_text()
    assert not [v for v in secret_values if v in log]
    assert not [v for v in secret_values if any(v in a for a in ran.argv)]


def _earlier_backup(cluster: ClusterHandle, stack: Stack, s3_server: S3Server) -> dict[str, str]:
    """One good backup first; returns key -> sha256 of everything it stored."""
    ran = run_backup(cluster, stack, "nightly", "baseline")
    assert ran.returncode == 0, ran.stderr
    s3 = s3_server.client()
    objects = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"backups/{stack.tenant}/")
    return {o["Key"]: hashlib.sha256(s3.get_object(Bucket=stack.bucket, Key=o["Key"])["Body"]
                                     .read()).hexdigest() for o in objects["Contents"]}


@pytest.mark.parametrize("failure", ["database-unreachable", "pg-dump-fails", "s3-unreachable",
                                     "wrong-credentials"])
def test_failed_run_is_reported_and_earlier_backups_are_untouched(
    cluster: ClusterHandle, stack: Stack, s3_server: S3Server, postgres_server: PostgresServer,
    failure: str,
) -> None:
    ns = stack.namespace
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        policy_manifest("nightly", stack.tenant, ns, stack.bucket, s3_server.endpoint)))
    before = _earlier_backup(cluster, stack, s3_server)
    eventually(lambda: condition_of(get_policy(cluster, ns, "nightly"), "LastBackupSucceeded")
               .get("status") == "True", timeout=120)

    if failure == "database-unreachable":
        stack.kubelet.services[f"postgres.{ns}.svc"] = ("127.0.0.1", 9)
    elif failure == "pg-dump-fails":
        postgres_server.psql("REVOKE SELECT ON shop.orders FROM app", stack.database)
    elif failure == "s3-unreachable":
        cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(policy_manifest(
            "nightly", stack.tenant, ns, stack.bucket, "http://127.0.0.1:9")))
    else:
        tenants.put_secret(cluster, ns, "s3-credentials", {
            "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
            "AWS_SECRET_ACCESS_KEY": "wrong-secret-wrong-secret-wrong-secret12",
        })
    ran = run_backup(cluster, stack, "nightly", f"fail-{failure}")
    assert ran.returncode != 0
    outcome = json.loads(ran.termination_message.strip().splitlines()[-1])
    assert outcome["result"] == "Failed" and outcome["reason"]

    def failed() -> dict[str, Any] | None:
        policy = get_policy(cluster, ns, "nightly")
        last = (policy.get("status") or {}).get("lastRun") or {}
        return policy if last.get("result") == "Failed" else None

    policy = eventually(failed, timeout=120)
    assert policy["status"]["lastRun"]["reason"] == outcome["reason"]
    assert condition_of(policy, "LastBackupSucceeded")["status"] == "False"
    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        ns, field_selector="involvedObject.name=nightly").items
    assert any(e.type == "Warning" and e.reason == outcome["reason"] for e in events)

    # Nothing of the failed run counts, and the earlier backup is intact.
    s3 = s3_server.client()
    objects = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"backups/{stack.tenant}/")
    after = {o["Key"]: hashlib.sha256(s3.get_object(Bucket=stack.bucket, Key=o["Key"])["Body"]
                                      .read()).hexdigest() for o in objects["Contents"]}
    assert {k: v for k, v in after.items() if k in before} == before
    failed_run = outcome["runId"]
    assert not any(k.startswith(f"backups/{stack.tenant}/{failed_run}/") for k in after)
    uploads = s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
    assert uploads == []
