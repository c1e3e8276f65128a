"""BackupPolicy end to end on the real node: the runner is a pod in the operator's
image, pg_dump reaches the tenant's PostgreSQL pod through its Service, the dump
goes to the TLS S3 server; the operator sees an ordinary Job and reads the truth
from S3."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.builders.backup import POLICY_LABEL, cron_job_name
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import runs, stack
from tests.realnode.runs import Tenant, condition_of, get_policy, policy_manifest, run_backup
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import metadata_of, name_of
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess,
           pod_s3: S3Server) -> Iterator[Tenant]:
    """One seeded tenant for the module; each test has policies and buckets of its own."""
    made = runs.seeded_tenant(real_cluster, pod_s3, "bk")
    yield made
    tenants.discard(real_cluster, made.name)


def test_on_demand_backup_end_to_end(
    real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server,
    real_operator: OperatorProcess,
) -> None:
    cluster, ns = real_cluster, tenant.namespace
    runs.apply(cluster, policy_manifest("nightly", tenant, pod_s3.endpoint, suspend=False))
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

    ran = run_backup(cluster, ns, "nightly", "first")
    assert ran.returncode == 0, ran.termination_message + runs.explain(cluster, ns)
    run_id = ran.outcome()["runId"]

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

    # The dump in S3 matches its manifest, and restores the seeded rows (pg_restore
    # inside the tenant's PostgreSQL pod, into a database of its own).
    manifest = runs.backup_manifest(pod_s3, tenant.bucket, tenant.name, run_id)
    dump_entry = next(a for a in manifest["artifacts"] if a["name"] == "postgres")
    dump = pod_s3.client().get_object(Bucket=tenant.bucket, Key=dump_entry["key"])["Body"].read()
    assert hashlib.sha256(dump).hexdigest() == dump_entry["sha256"]
    assert policy["status"]["lastSuccessfulRun"]["sha256"] == dump_entry["sha256"]
    restored = f"{stack.DATABASE}_restored"
    runs.psql_db(cluster, ns, "postgres", f"CREATE DATABASE {restored}")
    try:
        runs.pg_restore(cluster, ns, restored, dump)
        assert runs.row_counts(cluster, ns, restored) == runs.SEEDED
    finally:
        runs.psql_db(cluster, ns, "postgres", f"DROP DATABASE IF EXISTS {restored} WITH (FORCE)")
    configuration = next(a for a in manifest["artifacts"] if a["name"] == "configuration")
    assert configuration["sizeBytes"] > 0
    # Which database it is (read by the runner as the application role): what
    # retention tells a database made afresh by.
    assert manifest["postgres"]["systemIdentifier"] == stack.psql(
        cluster, ns, "SELECT system_identifier FROM pg_control_system()")

    # The tenant's BackupHealthy follows.
    found = tenants.wait_condition(cluster, tenant.name, "BackupHealthy", "True", timeout=120)
    assert found["status"]["lastBackup"]["runId"] == run_id

    # Made stale (the manifest now says the backup ran three days ago)...
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    manifest["startedAt"] = (three_days_ago - timedelta(minutes=1)).isoformat()
    manifest["finishedAt"] = three_days_ago.isoformat()
    pod_s3.client().put_object(
        Bucket=tenant.bucket, Key=f"backups/{tenant.name}/{run_id}/manifest.json",
        Body=json.dumps(manifest).encode())
    eventually(lambda: condition_of(get_policy(cluster, ns, "nightly"), "BackupFresh")
               .get("reason") == "Stale", timeout=120)
    tenants.wait_condition(cluster, tenant.name, "BackupHealthy", "False", timeout=120)

    # ... and fresh again after a new run.
    ran = run_backup(cluster, ns, "nightly", "second")
    assert ran.returncode == 0, ran.termination_message
    eventually(lambda: condition_of(get_policy(cluster, ns, "nightly"), "BackupFresh")
               .get("status") == "True", timeout=120)
    tenants.wait_condition(cluster, tenant.name, "BackupHealthy", "True", timeout=120)

    # No credential in the operator's log (it reads the S3 keys to list the bucket)
    # nor in the runner pod's argument list.
    credentials = client.CoreV1Api(cluster.api).read_namespaced_secret(
        "postgres-credentials", ns).data
    assert credentials is not None
    pg_password = base64.b64decode(credentials["password"]).decode()
    secret_values = [pod_s3.credentials.secret_access_key, pg_password]
    log = real_operator.process.log_path.read_text()
    assert not [v for v in secret_values if v in log]
    assert not [v for v in secret_values if any(v in a for a in ran.argv)]


def test_the_schedule_itself_starts_a_backup_that_passes_the_tenants_policies(
        real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server) -> None:
    """No request: the CronJob controller starts the run at the next minute, and the
    runner gets through the tenant's default-deny to PostgreSQL and S3 by the
    policy's own egress (the enforcer is kube-router on the node)."""
    cluster, ns = real_cluster, tenant.namespace
    policies = client.NetworkingV1Api(cluster.api).list_namespaced_network_policy(ns).items
    assert "default-deny" in {name_of(p) for p in policies}
    bucket = pod_s3.create_bucket()
    runs.apply(cluster, policy_manifest("every-minute", tenant, pod_s3.endpoint, bucket=bucket,
                                        schedule="* * * * *", suspend=False))

    def scheduled_run() -> dict[str, Any] | None:
        policy = get_policy(cluster, ns, "every-minute")
        last = (policy.get("status") or {}).get("lastSuccessfulRun") or {}
        return policy if last.get("id") else None

    policy = eventually(scheduled_run, timeout=240, interval=2)
    run_id = policy["status"]["lastSuccessfulRun"]["id"]
    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(
        ns, label_selector=f"{POLICY_LABEL}=every-minute").items
    started_by = {name_of(j): [o.name for o in metadata_of(j).owner_references or []]
                  for j in jobs}
    assert any(owners == [cron_job_name("every-minute")] for owners in started_by.values()), \
        started_by
    manifest = runs.backup_manifest(pod_s3, bucket, tenant.name, run_id)
    assert {a["name"] for a in manifest["artifacts"]} == {"postgres", "configuration"}
    # Stop it: the next minutes must not keep running backups beside the other tests.
    runs.apply(cluster, policy_manifest("every-minute", tenant, pod_s3.endpoint, bucket=bucket,
                                        schedule="* * * * *", suspend=True))


def _object_sha256s(s3: S3Server, bucket: str, tenant: Tenant) -> dict[str, str]:
    client_ = s3.client()
    objects = client_.list_objects_v2(Bucket=bucket, Prefix=f"backups/{tenant.name}/")
    return {o["Key"]: hashlib.sha256(client_.get_object(Bucket=bucket, Key=o["Key"])["Body"]
                                     .read()).hexdigest() for o in objects.get("Contents", [])}


# Each failure's own reason: one of them read as another (a runner's egress
# fault read as wrong keys) would be a fault the status hides.
FAILURE_REASONS = {
    "database-unreachable": "DatabaseUnreachable",
    "pg-dump-fails": "DatabasePermissionDenied",  # a grant to fix, not an outage
    "s3-unreachable": "S3Unreachable",
    "wrong-credentials": "S3AuthenticationFailed",
}


@pytest.mark.parametrize("failure", sorted(FAILURE_REASONS))
def test_failed_run_is_reported_and_earlier_backups_are_untouched(
    real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server, failure: str,
) -> None:
    # A policy, a bucket and a credentials Secret of this case's own, on the module's tenant.
    cluster, ns = real_cluster, tenant.namespace
    name, bucket, credentials = failure, pod_s3.create_bucket(), f"s3-credentials-{failure}"
    runs.put_s3_secrets(cluster, ns, pod_s3, credentials)
    runs.apply(cluster, policy_manifest(name, tenant, pod_s3.endpoint, bucket=bucket,
                                        credentials=credentials))
    try:
        _fail_a_run(cluster, tenant, pod_s3, failure, name, bucket, credentials)
    finally:
        cluster.kubectl("delete", "sfbp", name, "-n", ns, "--wait=false", check=False)


def _fail_a_run(cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server, failure: str,
                name: str, bucket: str, credentials: str) -> None:
    ns = tenant.namespace
    # One good backup first.
    ran = run_backup(cluster, ns, name, "baseline")
    assert ran.returncode == 0, ran.termination_message + runs.explain(cluster, ns)
    before = _object_sha256s(pod_s3, bucket, tenant)
    eventually(lambda: condition_of(get_policy(cluster, ns, name), "LastBackupSucceeded")
               .get("status") == "True", timeout=120)

    owner = runs.app_owner(cluster, ns)
    try:
        if failure == "database-unreachable":
            # The tenant suspended: its PostgreSQL StatefulSet at zero, the Service
            # without endpoints.
            runs.set_suspended(cluster, tenant, True)
        elif failure == "pg-dump-fails":
            runs.psql_db(cluster, ns, stack.DATABASE,
                         f'REVOKE SELECT ON shop.orders FROM "{owner}"')  # noqa: S608
        elif failure == "s3-unreachable":
            node_ip = pod_s3.endpoint.split("//", 1)[1].rsplit(":", 1)[0]
            runs.apply(cluster, policy_manifest(name, tenant, f"https://{node_ip}:9",
                                                bucket=bucket, credentials=credentials))
        else:
            tenants.put_secret(cluster, ns, credentials, {
                "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
                "AWS_SECRET_ACCESS_KEY": "wrong-secret-wrong-secret-wrong-secret12",
            })
        ran = run_backup(cluster, ns, name, f"fail-{failure}")
    finally:
        if failure == "database-unreachable":
            runs.set_suspended(cluster, tenant, False)
        elif failure == "pg-dump-fails":
            runs.psql_db(cluster, ns, stack.DATABASE, f'GRANT SELECT ON shop.orders TO "{owner}"')
    assert ran.returncode != 0, ran.termination_message
    outcome = ran.outcome()
    assert outcome["result"] == "Failed", outcome
    assert outcome["reason"] == FAILURE_REASONS[failure], outcome

    def failed() -> dict[str, Any] | None:
        policy = get_policy(cluster, ns, name)
        last = (policy.get("status") or {}).get("lastRun") or {}
        return policy if last.get("result") == "Failed" else None

    policy = eventually(failed, timeout=120)
    assert policy["status"]["lastRun"]["reason"] == outcome["reason"]
    assert condition_of(policy, "LastBackupSucceeded")["status"] == "False"

    # The operator writes the status first and the Event after it.
    def warned() -> bool:
        events = client.CoreV1Api(cluster.api).list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}").items
        return any(e.type == "Warning" and e.reason == outcome["reason"] for e in events)

    eventually(warned, timeout=30)

    # Nothing of the failed run counts, and the earlier backup is intact.
    after = _object_sha256s(pod_s3, bucket, tenant)
    assert {k: v for k, v in after.items() if k in before} == before
    failed_run = outcome["runId"]
    assert not any(k.startswith(f"backups/{tenant.name}/{failed_run}/") for k in after)
    uploads = pod_s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []
