"""DRDrill end to end on the real node: the operator's sandbox namespace, a scratch
PostgreSQL pod from the catalog, the restore Job's pod in the operator's image,
verdict, RTO/RPO."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator.builders import drill as drill_builders
from stackforge_operator.builders.drill import DRILL_NAMESPACE_LABEL
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.reconcile import storage
from tests.realnode import pods, runs, stack
from tests.realnode.runs import (
    Tenant,
    drill_manifest,
    finished_drill,
    get_drill,
    policy_manifest,
    run_backup,
    sandbox_of,
    watch_drill_pod,
)
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, spec_of, status_of
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually


@dataclass
class Backup:
    tenant: Tenant
    run_id: str


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess,
           pod_s3: S3Server) -> Iterator[Tenant]:
    """One seeded tenant with the BackupPolicy "nightly", for the whole module."""
    with runs.nightly_tenant(real_cluster, pod_s3, "dr") as made:
        yield made


@pytest.fixture
def backed_up(real_cluster: ClusterHandle, tenant: Tenant,
              request: pytest.FixtureRequest) -> Iterator[Backup]:
    """A fresh complete backup, the newest, for this test alone (which may spoil it);
    the test's drills are deleted after it."""
    ran = run_backup(real_cluster, tenant.namespace, "nightly", request.node.name)
    assert ran.returncode == 0, ran.termination_message
    run_id = ran.outcome()["runId"]
    # Drills restore the policy's newest successful run: wait until that is this one.
    eventually(lambda: ((runs.get_policy(real_cluster, tenant.namespace, "nightly")
                         .get("status") or {}).get("lastSuccessfulRun") or {})
               .get("id") == run_id, timeout=120)
    yield Backup(tenant, run_id)
    real_cluster.kubectl("delete", "sfdr", "--all", "-n", tenant.namespace, "--wait=false",
                         check=False)


def _tenant_snapshot(cluster: ClusterHandle, tenant: Tenant) -> tuple[set[str], dict[str, str]]:
    kinds = "deployments,statefulsets,services,configmaps,secrets,networkpolicies,cronjobs"
    objects = cluster.kubectl(
        "get", kinds, "-n", tenant.namespace, "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.resourceVersion}\n{end}",
    ).stdout.split()
    return set(objects), runs.table_checksums(cluster, tenant.namespace, stack.DATABASE)


def _namespace_gone(cluster: ClusterHandle, name: str) -> bool:
    try:
        ns = client.CoreV1Api(cluster.api).read_namespace(name)
    except ApiException as error:
        return bool(error.status == 404)
    return status_of(ns).phase == "Terminating"


def _allowed(cluster: ClusterHandle, sandbox: str, verb: str, resource: str,
             namespace: str) -> bool:
    """What `kubectl auth can-i --as=<the restore pod's ServiceAccount>` answers, through
    the API (quick: the sandbox lives only as long as the restore)."""
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=f"system:serviceaccount:{sandbox}:drill-runner",
        groups=["system:serviceaccounts", f"system:serviceaccounts:{sandbox}",
                "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(
            verb=verb, resource=resource, namespace=namespace)))
    answer = client.AuthorizationV1Api(cluster.api).create_subject_access_review(review)
    return bool(status_of(answer).allowed)


def _spoil(s3: S3Server, backup: Backup, change: Any) -> None:
    """Rewrite one object of the backup: ``change(manifest, s3 client, bucket)``."""
    tenant = backup.tenant
    key = f"backups/{tenant.name}/{backup.run_id}/manifest.json"
    manifest = json.loads(s3.client().get_object(Bucket=tenant.bucket, Key=key)["Body"].read())
    change(manifest, s3.client(), tenant.bucket, key)


def test_drill_passes_measures_rto_rpo_and_leaves_the_tenant_untouched(
    real_cluster: ClusterHandle, backed_up: Backup, pod_s3: S3Server,
) -> None:
    cluster, tenant = real_cluster, backed_up.tenant
    before = _tenant_snapshot(cluster, tenant)
    runs.apply(cluster, drill_manifest("monthly", tenant))
    sandbox = sandbox_of(cluster, tenant.namespace, "monthly")
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(watch_drill_pod, cluster, sandbox)
        # The restore pod's identity has no rights at all (it has no token either),
        # not even in its own sandbox.
        for verb, resource, namespace, allowed in (
            ("list", "pods", sandbox, False),
            ("create", "pods", tenant.namespace, False),
            ("get", "secrets", tenant.namespace, False),
            ("delete", "statefulsets", tenant.namespace, False),
            ("create", "secrets", sandbox, False),
        ):
            assert _allowed(cluster, sandbox, verb, resource, namespace) is allowed, (
                verb, resource, namespace)
        policy = client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
            "sandbox-isolation", sandbox)
        egress = spec_of(policy).egress or []
        # Out: the sandbox itself on any port; the cluster's DNS and the bucket's
        # endpoint on their ports only; no namespace selector admits the tenant's.
        inside = [r for r in egress if r.to and r.to[0].pod_selector is not None
                  and r.to[0].namespace_selector is None]
        outward = [r for r in egress if r not in inside]
        assert len(inside) == 1 and outward and all(r.ports for r in outward), egress
        for rule in outward:
            for peer in rule.to or []:
                selector = peer.namespace_selector
                if selector is None:
                    continue
                if selector.match_expressions:  # other namespaces: never the tenant's
                    blocked = selector.match_expressions[0]
                    assert blocked.operator == "NotIn", selector
                    assert tenant.namespace in (blocked.values or []), selector
                else:  # the cluster's DNS, nothing wider (an empty selector is any)
                    assert selector.match_labels == {
                        "kubernetes.io/metadata.name": "kube-system"}, selector
        ran = watching.result()
    assert ran.returncode == 0, ran.termination_message
    drill = finished_drill(cluster, tenant.namespace, "monthly")
    result = drill["status"]["lastResult"]
    assert result["verdict"] == "Passed", result
    assert result["rtoSeconds"] >= 0 and result["rpoSeconds"] >= 0
    assert result["rtoMet"] is True and result["rpoMet"] is True
    assert {c["kind"] for c in result["checks"]} >= {"RowCount", "Query", "Checksum"}
    assert all(c["passed"] for c in result["checks"])
    assert drill["status"]["phase"] == "Passed"
    assert [h["runId"] for h in drill["status"]["history"]] == [result["runId"]]
    # The evidence is in S3, next to the backup.
    key = result["reportLocation"].split(f"s3://{tenant.bucket}/", 1)[1]
    report = json.loads(pod_s3.client().get_object(Bucket=tenant.bucket, Key=key)["Body"]
                        .read())
    assert report["verdict"] == "Passed"
    # The sandbox is gone, the tenant unchanged, and DrillPassing follows.
    eventually(lambda: _namespace_gone(cluster, sandbox), timeout=60)
    assert _tenant_snapshot(cluster, tenant) == before
    found = tenants.wait_condition(cluster, tenant.name, "DrillPassing", "True", timeout=60)
    assert found["status"]["lastDrill"]["verdict"] == "Passed"


def test_corrupted_backup_fails_with_checksum_mismatch(
    real_cluster: ClusterHandle, backed_up: Backup, pod_s3: S3Server,
) -> None:
    cluster, tenant = real_cluster, backed_up.tenant

    def flip(manifest: dict[str, Any], s3: Any, bucket: str, _key: str) -> None:
        dump_key = next(a["key"] for a in manifest["artifacts"] if a["name"] == "postgres")
        data = bytearray(s3.get_object(Bucket=bucket, Key=dump_key)["Body"].read())
        data[len(data) // 2] ^= 0xFF  # flip bytes in the middle of the dump
        s3.put_object(Bucket=bucket, Key=dump_key, Body=bytes(data))

    _spoil(pod_s3, backed_up, flip)
    runs.apply(cluster, drill_manifest("corrupt", tenant))
    ran = watch_drill_pod(cluster, sandbox_of(cluster, tenant.namespace, "corrupt"))
    assert ran.returncode != 0
    drill = finished_drill(cluster, tenant.namespace, "corrupt")
    result = drill["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "ChecksumMismatch")
    assert result["backupId"] == backed_up.run_id
    stalled = next(c for c in drill["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ChecksumMismatch"
    tenants.wait_condition(cluster, tenant.name, "DrillPassing", "False", timeout=60)


def test_missed_rto_objective_is_reported(real_cluster: ClusterHandle,
                                          backed_up: Backup) -> None:
    cluster, tenant = real_cluster, backed_up.tenant
    runs.apply(cluster, drill_manifest("hasty", tenant,
                                       objectives={"rtoSeconds": 1, "rpoSeconds": 3600}))
    # Nothing slows the restore down on purpose: a real node takes seconds to make
    # the sandbox, start the scratch PostgreSQL (initdb included) and the restore pod.
    ran = watch_drill_pod(cluster, sandbox_of(cluster, tenant.namespace, "hasty"))
    result = finished_drill(cluster, tenant.namespace, "hasty")["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "RTOMissed")
    assert result["rtoMet"] is False and result["rtoSeconds"] > 1
    # The reported RTO counts from the drill's start, so it covers the time until
    # the restore pod's container even started (whole seconds, hence the 1 s slack).
    started = runs.parse_time(result["startTime"])
    assert result["rtoSeconds"] >= (ran.started_at - started).total_seconds() - 1, (
        result, ran.started_at)


def test_a_scratch_server_that_cannot_run_fails_the_run_at_once_with_its_cause(
        real_cluster: ClusterHandle, backed_up: Backup) -> None:
    """Not after the sandbox's TTL as a bare "Timeout": the server's stop is the cause."""
    cluster, tenant = real_cluster, backed_up.tenant
    starved = {"requests": {"memory": "16Mi"}, "limits": {"memory": "16Mi"}}
    runs.apply(cluster, drill_manifest("starved", tenant,
                                       sandbox={"ttlSeconds": 900, "resources": starved}))
    drill = finished_drill(cluster, tenant.namespace, "starved", timeout=180)
    result = drill["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "ScratchDatabaseFailed"), result
    assert "exit code" in result["message"], result
    took = runs.parse_time(result["completionTime"]) - runs.parse_time(result["startTime"])
    assert took.total_seconds() < 180, result


def test_missing_backup_stalls_the_drill(real_cluster: ClusterHandle, backed_up: Backup) -> None:
    cluster, tenant = real_cluster, backed_up.tenant
    runs.apply(cluster, drill_manifest(
        "lost", tenant, backup={"source": "ById", "id": "20200101T000000Z-000000"}))
    drill = finished_drill(cluster, tenant.namespace, "lost")
    assert drill["status"]["lastResult"]["reason"] == "BackupNotFound"
    stalled = next(c for c in drill["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"


def test_a_table_missing_from_the_restored_data_fails_the_row_count_check(
    real_cluster: ClusterHandle, backed_up: Backup, pod_s3: S3Server,
) -> None:
    """The manifest knows a table (counted at backup time) that the restore lacks."""
    cluster, tenant = real_cluster, backed_up.tenant

    def add_table(manifest: dict[str, Any], s3: Any, bucket: str, key: str) -> None:
        manifest["postgres"]["rowCounts"]["shop.invoices"] = 42
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())

    _spoil(pod_s3, backed_up, add_table)
    runs.apply(cluster, drill_manifest("gaps", tenant))
    result = finished_drill(cluster, tenant.namespace, "gaps")["status"]["lastResult"]
    assert (result["verdict"], result["reason"]) == ("Failed", "CheckFailed")
    failing = [c for c in result["checks"] if not c["passed"]]
    assert [(c["kind"], c["name"]) for c in failing] == [("RowCount", "shop.invoices")]
    assert failing[0]["expected"] == "42"


def test_scheduled_drill_runs_on_schedule_with_bounded_history(
    real_cluster: ClusterHandle, backed_up: Backup,
) -> None:
    cluster, tenant = real_cluster, backed_up.tenant
    runs.apply(cluster, drill_manifest("every-minute", tenant, once=False,
                                       schedule="* * * * *", historyLimit=1))
    first_sandbox = sandbox_of(cluster, tenant.namespace, "every-minute", timeout=120)
    ran = watch_drill_pod(cluster, first_sandbox)
    assert ran.returncode == 0, ran.termination_message
    # The next run may already be active by now: wait for the result alone.
    first = eventually(lambda: (get_drill(cluster, tenant.namespace, "every-minute")
                                .get("status") or {}).get("lastResult"), timeout=60)
    # The next minute starts the next run by itself.
    ran = watch_drill_pod(cluster, sandbox_of(cluster, tenant.namespace, "every-minute",
                                              exclude=first_sandbox, timeout=120))
    assert ran.returncode == 0, ran.termination_message

    def second_done() -> dict[str, Any] | None:
        drill = get_drill(cluster, tenant.namespace, "every-minute")
        last = (drill.get("status") or {}).get("lastResult") or {}
        return drill if last.get("runId") not in (None, first["runId"]) else None

    drill = eventually(second_done, timeout=60)
    history = drill["status"]["history"]
    assert [h["runId"] for h in history] == [drill["status"]["lastResult"]["runId"]]
    assert history[0]["runId"] > first["runId"]
    assert history[0]["verdict"] == "Passed"


def _sandboxes(cluster: ClusterHandle, tenant: Tenant, drill: str) -> list[str]:
    """The drill's sandbox namespaces that exist (named after the drill and its run)."""
    listed = client.CoreV1Api(cluster.api).list_namespace(
        label_selector=f"{DRILL_NAMESPACE_LABEL}={tenant.namespace}").items
    return [name_of(n) for n in listed if name_of(n).startswith(f"drill-{drill}-")]


def _rollup(cluster: ClusterHandle, tenant: Tenant, drill: str, type_: str) -> dict[str, Any]:
    return runs.condition_of(get_drill(cluster, tenant.namespace, drill), type_)


def test_a_suspended_drill_starts_nothing_until_resumed(real_cluster: ClusterHandle,
                                                        backed_up: Backup) -> None:
    cluster, tenant = real_cluster, backed_up.tenant
    runs.apply(cluster, drill_manifest("paused", tenant, suspend=True))
    eventually(lambda: _rollup(cluster, tenant, "paused", "Ready").get("reason") == "Suspended",
               timeout=60)
    time.sleep(8)  # resyncs every 3 s: none of them starts the first run
    found = get_drill(cluster, tenant.namespace, "paused").get("status") or {}
    assert not found.get("activeRun") and not found.get("lastResult"), found
    assert _sandboxes(cluster, tenant, "paused") == []

    runs.apply(cluster, drill_manifest("paused", tenant, suspend=False))
    ran = watch_drill_pod(cluster, sandbox_of(cluster, tenant.namespace, "paused"))
    assert ran.returncode == 0, ran.termination_message
    assert finished_drill(cluster, tenant.namespace, "paused")["status"]["lastResult"][
        "verdict"] == "Passed"


def test_a_drill_waits_for_its_policys_first_backup(
    real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server,
) -> None:
    """A drill of a policy that has made no backup yet says so and starts nothing (a run
    could only fail); the policy's first backup starts it."""
    cluster, ns = real_cluster, tenant.namespace
    runs.apply(cluster, policy_manifest("fresh", tenant, pod_s3.endpoint,
                                        bucket=pod_s3.create_bucket()))
    try:
        runs.apply(cluster, drill_manifest("early", tenant, backupPolicyRef={"name": "fresh"}))
        waiting = eventually(lambda: (c := _rollup(cluster, tenant, "early", "Reconciling"))
                             .get("reason") == "WaitingForBackup" and c, timeout=60)
        assert waiting["status"] == "True" and "BackupPolicy fresh" in waiting["message"]
        time.sleep(6)
        found = get_drill(cluster, ns, "early").get("status") or {}
        assert not found.get("activeRun") and not found.get("lastResult"), found
        assert _sandboxes(cluster, tenant, "early") == []

        first = run_backup(cluster, ns, "fresh", "first")
        assert first.returncode == 0, first.termination_message
        ran = watch_drill_pod(cluster, sandbox_of(cluster, ns, "early", timeout=120))
        assert ran.returncode == 0, ran.termination_message
        result = finished_drill(cluster, ns, "early")["status"]["lastResult"]
        assert (result["verdict"], result["backupId"]) == ("Passed", first.outcome()["runId"])
    finally:
        cluster.kubectl("delete", "sfdr", "early", "-n", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "sfbp", "fresh", "-n", ns, "--wait=false", check=False)


def test_a_sandbox_reaches_storage_and_dns_but_never_the_tenant(
    real_cluster: ClusterHandle, tenant: Tenant, pod_s3: S3Server,
) -> None:
    """The sandbox's own policy, on a pod in a namespace of its own, towards a pod
    of the tenant's namespace that admits everyone (its own policy, made here):
    what stops the sandbox must be the sandbox's egress. The dataplane
    (kube-router) matches ipBlocks against pod addresses too, so a block of every
    address let a sandbox reach the tenant's pods."""
    cluster = real_cluster
    sandbox = f"sandbox-probe-{tenant.name}"
    target = {"app": "open-target"}
    cluster.kubectl("create", "namespace", sandbox)
    try:
        pods.apply(
            cluster,
            pods.postgres_pod("probe", sandbox, {"app": "probe"}),
            pods.postgres_pod("open-target", tenant.namespace, target),
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "open-target", "namespace": tenant.namespace},
             "spec": {"podSelector": {"matchLabels": target}, "policyTypes": ["Ingress"],
                      "ingress": [{}]}})
        pods.wait_ready(cluster, sandbox, "probe")
        pods.wait_ready(cluster, tenant.namespace, "open-target")
        core = client.CoreV1Api(cluster.api)
        target_ip = status_of(core.read_namespaced_pod("open-target", tenant.namespace)).pod_ip
        assert target_ip is not None  # a Ready pod has its address

        def opens(host: str, port: int) -> bool:
            return pods.exec_in(cluster, sandbox, "probe", "timeout", "4", "bash", "-c",
                                f"exec 3<>/dev/tcp/{host}/{port}", check=False).returncode == 0

        # Before the sandbox's policy the probe connects: the target admits everyone.
        eventually(lambda: opens(target_ip, 5432), timeout=30)
        runs.apply(cluster, drill_builders.network_policy(
            sandbox, "probe", tenant.namespace, tenant.namespace, pod_s3.endpoint,
            storage.endpoint_addresses(pod_s3.endpoint)))
        eventually(lambda: not opens(target_ip, 5432), timeout=30)
        assert opens(pod_s3.host, pod_s3.port), "the sandbox cannot reach its object storage"
        assert pods.exec_in(cluster, sandbox, "probe", "getent", "hosts",
                            f"postgres.{tenant.namespace}.svc", check=False).returncode == 0
        time.sleep(3)  # still refused once the policy has settled
        assert not opens(target_ip, 5432), "the sandbox reaches the tenant's pods"
    finally:
        cluster.kubectl("delete", "namespace", sandbox, "--wait=false", check=False)
        cluster.kubectl("delete", "pod,networkpolicy", "-n", tenant.namespace, "open-target",
                        "--wait=false", check=False)
