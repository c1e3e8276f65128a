"""DRDrill end to end: sandbox, scratch database, restore Job run for real, verdict, RTO/RPO."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support import tenants
from tests.support.backup_stack import Stack
from tests.support.clusters import ClusterHandle
from tests.support.drill_stack import drill_manifest, finished_drill, get_drill, run_drill_pod
from tests.support.postgres_server import PostgresServer
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually


def _tenant_snapshot(cluster: ClusterHandle, stack: Stack,
                     postgres: PostgresServer) -> tuple[set[str], dict[str, str]]:
    kinds = "deployments,statefulsets,services,configmaps,secrets,networkpolicies,cronjobs"
    objects = cluster.kubectl(
        "get", kinds, "-n", stack.namespace, "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion}\n{end}",
    ).stdout.split()
    checksums = {t: postgres.table_checksum(stack.database, *t.split("."))
                 for t in postgres.row_counts(stack.database)}
    return set(objects), checksums


def _namespace_gone(cluster: ClusterHandle, name: str) -> bool:
    try:
        ns = client.CoreV1Api(cluster.api).read_namespace(name)
    except ApiException as error:
        return error.status == 404
    return ns.status.phase == "Terminating"


def test_drill_passes_measures_rto_rpo_and_leaves_the_tenant_untouched(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
    s3_server: S3Server,
) -> None:
    stack = backed_up
    before = _tenant_snapshot(cluster, stack, postgres_server)
    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input=json.dumps(drill_manifest("monthly", stack)))

    def sandbox_ready() -> str | None:
        drill = get_drill(cluster, stack.namespace, "monthly")
        active = (drill.get("status") or {}).get("activeRun")
        return active.get("sandboxNamespace") if active and active.get("jobName") else None

    sandbox = eventually(sandbox_ready, timeout=90)
    # The restore pod's identity has rights in its sandbox only.
    account = f"system:serviceaccount:{sandbox}:drill-runner"
    for verb, resource, namespace, allowed in (
        ("list", "pods", sandbox, "yes"),
        ("create", "pods", stack.namespace, "no"),
        ("get", "secrets", stack.namespace, "no"),
        ("delete", "statefulsets", stack.namespace, "no"),
        ("create", "secrets", sandbox, "no"),
    ):
        answer = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace,
                                 f"--as={account}", check=False).stdout.strip()
        assert answer == allowed, (verb, resource, namespace, answer)
    policy = client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
        "sandbox-isolation", sandbox)
    blocked = policy.spec.egress[2].to[0].namespace_selector.match_expressions[0]
    assert blocked.operator == "NotIn" and stack.namespace in blocked.values

    _, ran = run_drill_pod(cluster, stack, postgres_server, "monthly")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    drill = finished_drill(cluster, stack.namespace, "monthly")
    result = drill["status"]["lastResult"]
    assert result["verdict"] == "Passed", result
    assert result["rtoSeconds"] >= 0 and result["rpoSeconds"] >= 0
    assert result["rtoMet"] is True and result["rpoMet"] is True
    assert {c["kind"] for c in result["checks"]} >= {"RowCount", "Query", "Checksum"}
    assert all(c["passed"] for c in result["checks"])
    assert drill["status"]["phase"] == "Passed"
    assert [h["runId"] for h in drill["status"]["history"]] == [result["runId"]]
    # The evidence is in S3, next to the backup.
    key = result["reportLocation"].split(f"s3://{stack.bucket}/", 1)[1]
    report = json.loads(s3_server.client().get_object(Bucket=stack.bucket, Key=key)["Body"]
                        .read())
    assert report["verdict"] == "Passed"
    # The sandbox is gone, the tenant unchanged, and DrillPassing follows.
    eventually(lambda: _namespace_gone(cluster, sandbox), timeout=60)
    assert _tenant_snapshot(cluster, stack, postgres_server) == before
    tenant = tenants.wait_condition(cluster, stack.tenant, "DrillPassing", "True", timeout=60)
    assert tenant["status"]["lastDrill"]["verdict"] == "Passed"


def test_corrupted_backup_fails_with_checksum_mismatch(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
    s3_server: S3Server,
) -> None:
    stack = backed_up
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.bucket, Prefix=f"backups/{stack.tenant}/")["Contents"]]
    dump_key = next(k for k in keys if k.endswith(".dump") or "postgres" in k.rsplit("/", 1)[1])
    data = bytearray(s3.get_object(Bucket=stack.bucket, Key=dump_key)["Body"].read())
    data[len(data) // 2] ^= 0xFF  # flip bytes in the middle of the dump
    s3.put_object(Bucket=stack.bucket, Key=dump_key, Body=bytes(data))

    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input=json.dumps(drill_manifest("corrupt", stack)))
    _, ran = run_drill_pod(cluster, stack, postgres_server, "corrupt")
    assert ran.returncode != 0
    drill = finished_drill(cluster, stack.namespace, "corrupt")
    result = drill["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "ChecksumMismatch")
    ready = next(c for c in drill["status"]["conditions"] if c["type"] == "Stalled")
    assert ready["status"] == "True" and ready["reason"] == "ChecksumMismatch"
    tenants.wait_condition(cluster, stack.tenant, "DrillPassing", "False", timeout=60)


def test_missed_rto_objective_is_reported(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
) -> None:
    stack = backed_up
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(drill_manifest(
        "hasty", stack, objectives={"rtoSeconds": 1, "rpoSeconds": 3600})))
    # A small restore here can finish within a second of the drill's start;
    # the container start a real kubelet needs makes sure it does not.
    run_drill_pod(cluster, stack, postgres_server, "hasty", start_delay=2.0)
    result = finished_drill(cluster, stack.namespace, "hasty")["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "RTOMissed")
    assert result["rtoMet"] is False and result["rtoSeconds"] > 1


def test_missing_backup_stalls_the_drill(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
) -> None:
    stack = backed_up
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(drill_manifest(
        "lost", stack, backup={"source": "ById", "id": "20200101T000000Z-000000"})))
    run_drill_pod(cluster, stack, postgres_server, "lost")
    drill = finished_drill(cluster, stack.namespace, "lost")
    assert drill["status"]["lastResult"]["reason"] == "BackupNotFound"
    stalled = next(c for c in drill["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"


def test_scheduled_drill_runs_on_schedule_with_bounded_history(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
) -> None:
    stack = backed_up
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(drill_manifest(
        "every-minute", stack, once=False, schedule="* * * * *", historyLimit=1)))
    first_sandbox, ran = run_drill_pod(cluster, stack, postgres_server, "every-minute")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # The next run may already be active by now: wait for the result alone.
    first = eventually(lambda: (get_drill(cluster, stack.namespace, "every-minute").get("status")
                                or {}).get("lastResult"), timeout=60)
    # The next minute starts the next run by itself.
    _, ran = run_drill_pod(cluster, stack, postgres_server, "every-minute",
                            exclude=first_sandbox, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    def second_done() -> dict[str, Any] | None:
        drill = get_drill(cluster, stack.namespace, "every-minute")
        last = (drill.get("status") or {}).get("lastResult") or {}
        return drill if last.get("runId") not in (None, first["runId"]) else None

    drill = eventually(second_done, timeout=60)
    history = drill["status"]["history"]
    assert [h["runId"] for h in history] == [drill["status"]["lastResult"]["runId"]]
    assert history[0]["runId"] > first["runId"]
    assert history[0]["verdict"] == "Passed"
    cluster.kubectl("delete", "sfdr", "every-minute", "-n", stack.namespace)


def test_a_table_missing_from_the_restored_data_fails_the_row_count_check(
    cluster: ClusterHandle, backed_up: Stack, postgres_server: PostgresServer,
    s3_server: S3Server,
) -> None:
    """The manifest knows a table (counted at backup time) that the restore lacks."""
    stack = backed_up
    s3 = s3_server.client()
    key = next(o["Key"] for o in s3.list_objects_v2(
        Bucket=stack.bucket, Prefix=f"backups/{stack.tenant}/")["Contents"]
        if o["Key"].endswith("/manifest.json"))
    manifest = json.loads(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    manifest["postgres"]["rowCounts"]["shop.invoices"] = 42
    s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(manifest).encode())

    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input=json.dumps(drill_manifest("gaps", stack)))
    run_drill_pod(cluster, stack, postgres_server, "gaps")
    result = finished_drill(cluster, stack.namespace, "gaps")["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "CheckFailed")
    failing = [c for c in result["checks"] if not c["passed"]]
    assert [(c["kind"], c["name"]) for c in failing] == [("RowCount", "shop.invoices")]
    assert failing[0]["expected"] == "42"
