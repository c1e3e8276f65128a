"""reconcile/backup.py against the API server: what a policy may run, and when.

Two BackupPolicies of one tenant in one place of a bucket: each policy's
retention prunes every run under ``<prefix>/<tenant>/``, so two there deleted
each other's backups. The younger is refused before it makes or runs
anything, and one moved onto the older's place loses its CronJob (that path
ends before any S3 request).

A run on demand and a scheduled one never overlap: the CronJob's
concurrencyPolicy counts only its own Jobs. These tests read the bucket of
moto's S3 server; the nodes are kwok's, so no Job runs: the tests end Jobs by
writing their status.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.backup.manifest import Manifest, ManifestArtifact
from stackforge_operator.backup.store import BackupStore, StoreConfig
from stackforge_operator.builders import archiving, backup_network
from stackforge_operator.builders import backup as builders
from stackforge_operator.devcluster.s3server import S3Server
from stackforge_operator.models.backup import PhysicalBackup, PhysicalBackupType
from stackforge_operator.reconcile import backup
from stackforge_operator.reconcile.common import referenced_tenant
from stackforge_operator.status import Problem
from tests.support import kwok_jobs, tenants
from tests.support.clusters import ClusterHandle
from tests.support.fixtures_backup import s3_bucket, s3_server  # noqa: F401 - fixtures
from tests.support.secrets import S3_KEYS, put_secret

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


@pytest.fixture(autouse=True)
def _names_free(cluster: ClusterHandle) -> None:
    """Each test makes its tenants anew: an earlier test's, its namespace still
    going, would keep the name (TenantNameTaken) and this test's would be no
    tenant to back up or drill."""
    tenants.remove_namesakes(cluster, "shared", "clone")

API = f"{API_GROUP}/{API_VERSION}"


def _apply_policy(cluster: ClusterHandle, namespace: str, name: str, prefix: str,
                  schedule: str = "0 2 * * *", *, keys: bool = True) -> None:
    storage: dict[str, Any] = {"bucket": "backups", "prefix": prefix}
    if keys:
        try:
            put_secret(cluster, namespace, "policy-s3", S3_KEYS)
        except ApiException as error:
            if error.status != 409:  # the test's second policy: the same keys
                raise
        storage["credentialsSecretRef"] = {"name": "policy-s3"}
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "BackupPolicy",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"tenantRef": {"name": "shared"}, "schedule": schedule,
                                 "storage": storage, "retention": {"keepLast": 2}}}))


def _policy(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, "backuppolicies", name)
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    return found


def _reconciled_stalled(cluster: ClusterHandle, namespace: str, name: str,
                        reason: str) -> dict[str, Any]:
    """Reconcile policy ``name``: it stalls (a stalled policy's pace) with
    ``reason``; its Stalled condition."""
    outcome = backup.reconcile(_policy(cluster, namespace, name))
    assert outcome.requeue_after == backup.STALLED_SECONDS
    found = tenants.condition(_policy(cluster, namespace, name), "Stalled") or {}
    assert (found.get("status"), found.get("reason")) == ("True", reason), found
    return found


def _cron_job_exists(cluster: ClusterHandle, namespace: str, policy: str) -> bool:
    try:
        job = client.BatchV1Api(cluster.api).read_namespaced_cron_job(
            builders.cron_job_name(policy), namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return job.metadata is not None and job.metadata.deletion_timestamp is None


def _put_cron_job(cluster: ClusterHandle, namespace: str, policy: str) -> None:
    """A CronJob as the policy's own (kwok runs none of its Jobs)."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": builders.cron_job_name(policy)},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "backup", "image": "stackforge-operator:test"}]}}}}}}))
    assert _cron_job_exists(cluster, namespace, policy)


def test_a_schedule_whose_range_runs_backwards_stalls_the_policy_saying_so(
        cluster: ClusterHandle, namespace: str) -> None:
    """The CRD's grammar and croniter take "22-2"; the CronJob API refuses it, so
    the policy's CronJob was refused at every pass, unreported, and nothing ran."""
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    _apply_policy(cluster, namespace, "nightly", "stackforge", schedule="0 22-2 * * *")
    found = _reconciled_stalled(cluster, namespace, "nightly", "InvalidSchedule")
    assert "the range 22-2 runs backwards" in found["message"], found
    assert not _cron_job_exists(cluster, namespace, "nightly")


def test_a_policy_without_keys_stalls_unless_the_operator_lends_an_identity(
        cluster: ClusterHandle, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keys, the operator read (and pruned) the named bucket and prefix with
    its own identity, and the runners used the node's: any tenant's policy could
    name another's place."""
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    _apply_policy(cluster, namespace, "nightly", "stackforge", keys=False)
    monkeypatch.delenv("STACKFORGE_AMBIENT_S3_IDENTITY", raising=False)
    found = _reconciled_stalled(cluster, namespace, "nightly", "CredentialsRequired")
    assert "STACKFORGE_AMBIENT_S3_IDENTITY=allow" in found["message"], found
    assert not _cron_job_exists(cluster, namespace, "nightly")
    # Where the operator lends it, the policy runs (its CronJob is made).
    monkeypatch.setenv("STACKFORGE_AMBIENT_S3_IDENTITY", "allow")
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    found = tenants.condition(_policy(cluster, namespace, "nightly"), "Stalled") or {}
    assert found.get("reason") != "CredentialsRequired", found
    assert _cron_job_exists(cluster, namespace, "nightly")


def test_a_second_policy_in_the_same_place_is_refused_and_runs_nothing(
        cluster: ClusterHandle, namespace: str) -> None:
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    # Named in the order they are made: created in one second, the name decides.
    _apply_policy(cluster, namespace, "a-nightly", "stackforge")
    _apply_policy(cluster, namespace, "b-hourly", "stackforge")

    found = _reconciled_stalled(cluster, namespace, "b-hourly", "StorageInUse")
    assert "BackupPolicy a-nightly" in found["message"]
    assert "s3://backups/stackforge/shared/" in found["message"]
    assert not _cron_job_exists(cluster, namespace, "b-hourly")


def test_a_policy_beside_a_tenant_that_lost_its_name_does_nothing(
        cluster: ClusterHandle, namespace: str) -> None:
    """Backups are keyed by the tenant's name alone: a policy beside a namesake
    that may not run (TenantNameTaken) listed, reported and pruned the backups of
    the tenant that holds the name, with keys and retention its owner chose."""
    holder_ns = f"{namespace}-h"[:63]
    try:
        tenants.apply(cluster, tenants.small_tenant("shared", namespace=holder_ns))
        time.sleep(1.1)  # whole seconds: the first made is the older, and keeps the name
        tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
        _apply_policy(cluster, namespace, "nightly", "stackforge")
        # A CronJob made before its tenant's place was asked (an older operator).
        _put_cron_job(cluster, namespace, "nightly")

        found = _reconciled_stalled(cluster, namespace, "nightly", "TenantNotPlaced")
        assert "TenantNameTaken" in found["message"] and holder_ns in found["message"]
        assert not _cron_job_exists(cluster, namespace, "nightly")
        # The tenant that holds the name is one to back up.
        assert not isinstance(referenced_tenant("shared", holder_ns), Problem)
    finally:
        cluster.kubectl("delete", "namespace", holder_ns, "--wait=false", check=False)


def test_a_policy_whose_tenant_is_deleted_runs_nothing_until_it_is_back(
        cluster: ClusterHandle, namespace: str) -> None:
    """The tenant deleted, its policy kept: its CronJob started a run every night
    that waited for the tenant's credentials Secret (gone with it) until its
    deadline, then failed."""
    tenant = tenants.small_tenant("shared", namespace=namespace)
    tenants.apply(cluster, tenant)
    _apply_policy(cluster, namespace, "nightly", "stackforge")
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert _cron_job_exists(cluster, namespace, "nightly")

    cluster.kubectl("delete", "stackforgetenant", "shared", "-n", namespace, "--wait=true")
    found = _reconciled_stalled(cluster, namespace, "nightly", "TenantNotFound")
    assert f"StackForgeTenant shared does not exist in namespace {namespace}" in found[
        "message"], found
    assert not _cron_job_exists(cluster, namespace, "nightly")

    # Made again (a GitOps sync): its schedule is back.
    tenants.apply(cluster, tenant)
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert _cron_job_exists(cluster, namespace, "nightly")


def test_a_policy_moved_onto_anothers_place_loses_its_cron_job(
        cluster: ClusterHandle, namespace: str) -> None:
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    _apply_policy(cluster, namespace, "a-nightly", "stackforge")
    _apply_policy(cluster, namespace, "b-hourly", "hourly")
    # The CronJob it made while in a place of its own (kwok runs none of its Jobs).
    _put_cron_job(cluster, namespace, "b-hourly")

    _apply_policy(cluster, namespace, "b-hourly", "stackforge")  # moved
    backup.reconcile(_policy(cluster, namespace, "b-hourly"))
    found = tenants.condition(_policy(cluster, namespace, "b-hourly"), "Stalled") or {}
    assert found.get("reason") == "StorageInUse", found
    assert not _cron_job_exists(cluster, namespace, "b-hourly")


def _cron_job(cluster: ClusterHandle, namespace: str) -> Any:
    return client.BatchV1Api(cluster.api).read_namespaced_cron_job(
        builders.cron_job_name("nightly"), namespace)


def _policy_jobs(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    listed = client.BatchV1Api(cluster.api).list_namespaced_job(
        namespace, label_selector=f"{builders.POLICY_LABEL}=nightly").items
    return {str(job.metadata.name): job for job in listed if job.metadata is not None}


def _ask(cluster: ClusterHandle, namespace: str, request: str) -> None:
    cluster.kubectl("annotate", "--overwrite", "backuppolicies.stackforge.io", "nightly",
                    "-n", namespace, f"{builders.BACKUP_NOW_ANNOTATION}={request}")


def _nightly_in(cluster: ClusterHandle, namespace: str, s3: S3Server, bucket: str) -> None:
    """Tenant "shared" and its policy "nightly" into ``bucket``."""
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    put_secret(cluster, namespace, "s3-credentials", s3.credentials.env())
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "BackupPolicy",
                        "metadata": {"name": "nightly", "namespace": namespace},
                        "spec": {"tenantRef": {"name": "shared"}, "schedule": "0 2 * * *",
                                 "storage": {"bucket": bucket, "endpoint": s3.endpoint,
                                             "forcePathStyle": True,
                                             "credentialsSecretRef": {"name": "s3-credentials"}},
                                 "retention": {"keepLast": 2}}}))


def test_a_backup_on_demand_waits_for_the_scheduled_run_and_holds_the_next_one(
        cluster: ClusterHandle, namespace: str, s3_server: S3Server,  # noqa: F811
        s3_bucket: str) -> None:  # noqa: F811
    """Two dumps of one database at once: twice the load on the primary, for a
    backup that is no newer. The CronJob's Forbid saw neither way across."""
    _nightly_in(cluster, namespace, s3_server, s3_bucket)
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    cron = _cron_job(cluster, namespace)
    assert cron.spec.suspend is False
    # The CronJob starts its run (as its controller would, owner and all).
    scheduled = "nightly-29000000"
    client.BatchV1Api(cluster.api).create_namespaced_job(namespace, client.V1Job(
        metadata=client.V1ObjectMeta(
            name=scheduled, labels={builders.POLICY_LABEL: "nightly"},
            owner_references=[client.V1OwnerReference(
                api_version="batch/v1", kind="CronJob", name=cron.metadata.name,
                uid=cron.metadata.uid, controller=True)]),
        spec=cron.spec.job_template.spec))

    _ask(cluster, namespace, "before-the-upgrade")
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert set(_policy_jobs(cluster, namespace)) == {scheduled}
    waiting = _policy(cluster, namespace, "nightly")["status"]
    assert waiting["activeRun"]["jobName"] == scheduled, waiting

    kwok_jobs.record_success(cluster, namespace, scheduled)
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    asked = builders.manual_job_name("nightly", "before-the-upgrade")
    assert set(_policy_jobs(cluster, namespace)) == {scheduled, asked}
    assert _policy(cluster, namespace, "nightly")["status"]["activeRun"]["jobName"] == asked
    # While it runs, the schedule is held: a 02:00 now would be a second dump.
    assert _cron_job(cluster, namespace).spec.suspend is True

    kwok_jobs.record_success(cluster, namespace, asked)
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert _cron_job(cluster, namespace).spec.suspend is False


def test_the_jobs_of_runs_on_demand_are_kept_as_the_schedules_are(
        cluster: ClusterHandle, namespace: str, s3_server: S3Server,  # noqa: F811
        s3_bucket: str) -> None:  # noqa: F811
    """One Job (and its pod) per request was kept for ever; the CronJob keeps 3."""
    _nightly_in(cluster, namespace, s3_server, s3_bucket)
    asked = [f"request-{i}" for i in range(5)]
    finished = datetime.now(UTC) + timedelta(minutes=1)
    for i, request in enumerate(asked):
        _ask(cluster, namespace, request)
        backup.reconcile(_policy(cluster, namespace, "nightly"))
        kwok_jobs.record_success(cluster, namespace,
                                 builders.manual_job_name("nightly", request),
                                 finished + timedelta(minutes=i))
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    kept = {builders.manual_job_name("nightly", r) for r in asked[-backup.ON_DEMAND_JOBS_KEPT:]}
    tenants.eventually(lambda: set(_policy_jobs(cluster, namespace)) == kept, timeout=30)

    # The request on the policy keeps its Job however old: without it the same
    # request would run again. (Three newer runs: made up after a window.)
    current = builders.manual_job_name("nightly", asked[-1])
    uid = _policy_jobs(cluster, namespace)[current].metadata.uid
    for i, made_up in enumerate(("made-up-1", "made-up-2", "made-up-3")):
        client.BatchV1Api(cluster.api).create_namespaced_job(namespace, client.V1Job(
            metadata=client.V1ObjectMeta(
                name=builders.manual_job_name("nightly", made_up),
                labels={builders.POLICY_LABEL: "nightly"}),
            spec=_cron_job(cluster, namespace).spec.job_template.spec))
        kwok_jobs.record_success(cluster, namespace,
                                 builders.manual_job_name("nightly", made_up),
                                 finished + timedelta(minutes=10 + i))
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    time.sleep(2)  # a deletion (in the background) would show by now
    jobs = _policy_jobs(cluster, namespace)
    assert jobs[current].metadata.uid == uid
    assert len(jobs) == 4, sorted(jobs)


def test_physical_backups_turned_off_withdraw_the_request_left_on_the_primary(
        cluster: ClusterHandle, namespace: str) -> None:
    """Turned off (often because they failed), a request left on the primary's pod
    was tried again by its archiver every few minutes, for ever, unreported.
    (The bucket answers nothing here: withdrawing needs no S3.)"""
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    put_secret(cluster, namespace, "s3-credentials", S3_KEYS)
    put_secret(cluster, namespace, "cipher", {"passphrase": "not-a-real-one"})
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "BackupPolicy",
                        "metadata": {"name": "nightly", "namespace": namespace},
                        "spec": {"tenantRef": {"name": "shared"}, "schedule": "0 2 * * *",
                                 "storage": {"bucket": "backups",
                                             "endpoint": "https://127.0.0.1:1",
                                             "credentialsSecretRef": {"name": "s3-credentials"}},
                                 "retention": {"keepLast": 2},
                                 "continuousArchiving": {"repositoryCipherSecretRef": {
                                     "name": "cipher", "key": "passphrase"}}}}))
    request = "20261206T010000Z full count 2"
    kwok_jobs.unscheduled_pod(cluster, namespace, "postgres-0", "postgres",
                              annotations={archiving.REQUEST_ANNOTATION: request})
    core = client.CoreV1Api(cluster.api)

    def annotations() -> dict[str, str]:
        meta = core.read_namespaced_pod("postgres-0", namespace).metadata
        return dict((meta.annotations if meta else None) or {})

    backup.reconcile(_policy(cluster, namespace, "nightly"))

    assert archiving.REQUEST_ANNOTATION not in annotations(), annotations()
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=nightly,"
                                  "reason=PhysicalBackupWithdrawn").items
    assert events and "20261206T010000Z" in (events[0].message or ""), events


def _dump_of_shared(store: BackupStore, started: datetime) -> str:
    """A complete logical backup run of tenant "shared", as the runner leaves it."""
    run_id = f"{started.strftime('%Y%m%dT%H%M%SZ')}-aaaaaa"
    prefix = store.config.run_prefix("shared", run_id)
    dump = store.put_bytes(prefix + "postgres.dump", b"dump " + run_id.encode())
    store.write_manifest(Manifest(
        tenant="shared", run_id=run_id, bucket=store.bucket, prefix=prefix.rstrip("/"),
        started_at=started, finished_at=started + timedelta(minutes=2),
        artifacts=[ManifestArtifact(name="postgres", key=dump.key,
                                    size_bytes=dump.size_bytes, sha256=dump.sha256)]))
    return run_id


def _drill_run(cluster: ClusterHandle, namespace: str, name: str,
               run: dict[str, Any] | None) -> None:
    """A DRDrill of tenant "shared" with ``run`` as its active run, as the drill's
    reconcile records it (none runs here: the status is written as it would)."""
    cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                    input=json.dumps({
                        "apiVersion": API, "kind": "DRDrill",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"tenantRef": {"name": "shared"},
                                 "backupPolicyRef": {"name": "nightly"}, "once": True}}))
    cluster.kubectl("patch", "drdrills.stackforge.io", name, "-n", namespace,
                    "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"activeRun": run}}))


def test_retention_keeps_the_dump_a_running_drill_restores_until_the_run_ends(
        cluster: ClusterHandle, namespace: str, s3_server: S3Server,  # noqa: F811
        s3_bucket: str) -> None:  # noqa: F811
    """A drill of last month's dump lost it to the nightly retention midway
    through its restore, and failed. Also one restoring for longer than the
    policy's run deadline (6 h): the hold lapsed then, midway through a large
    restore."""
    _nightly_in(cluster, namespace, s3_server, s3_bucket)  # keepLast 2
    store = BackupStore(StoreConfig(bucket=s3_bucket), client=s3_server.client())
    now = datetime.now(UTC).replace(microsecond=0)
    runs = [_dump_of_shared(store, now - timedelta(days=days)) for days in (4, 3, 2, 1)]
    _drill_run(cluster, namespace, "monthly", {
        "runId": now.strftime("%Y%m%dT%H%M%SZ"), "step": "Restoring",
        "startTime": (now - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "backupId": runs[0]})

    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert [r.run_id for r in store.list_runs("shared")] == [runs[0], *runs[2:]]

    _drill_run(cluster, namespace, "monthly", None)  # the run has ended
    runs.append(_dump_of_shared(store, now))
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert [r.run_id for r in store.list_runs("shared")] == runs[3:]


def test_a_physical_backup_whose_expiry_removes_what_a_restore_reads_is_held(
        cluster: ClusterHandle, namespace: str) -> None:
    """The drills and tenants the policy's pass reads, as the operator reads them
    (its RBAC): a drill's run of the repository, then a clone's bootstrap of it."""
    tenants.apply(cluster, tenants.small_tenant("shared", namespace=namespace))
    repository = f"/stackforge/_pgbackrest/shared-{namespace}/7400000000000000001-x"
    now = datetime.now(UTC).replace(microsecond=0)
    week = timedelta(days=7)
    backups = [PhysicalBackup(label=f"{label}F", type=PhysicalBackupType.FULL, stop_time=stop)
               for label, stop in (("20261116-010000", now - 2 * week),
                                   ("20261123-010000", now - week))]
    request = archiving.BackupRequest(now, PhysicalBackupType.FULL, "count", 2)
    deadline = timedelta(hours=6)
    assert backup._request_held(request, backups, repository, now, deadline) is None

    started = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    into_first = (now - week - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _drill_run(cluster, namespace, "pitr", {
        "runId": now.strftime("%Y%m%dT%H%M%SZ"), "step": "Restoring", "startTime": started,
        "repositoryPath": repository, "recoveryTarget": into_first})
    held = backup._request_held(request, backups, repository, now, deadline)
    assert held is not None and f"DRDrill {namespace}/pitr" in held, held
    assert "backup 20261116-010000F" in held, held
    # Its run asks for the latest: the new full backup leaves the newest one.
    _drill_run(cluster, namespace, "pitr", {
        "runId": now.strftime("%Y%m%dT%H%M%SZ"), "step": "Restoring", "startTime": started,
        "repositoryPath": repository, "recoveryTarget": "latest"})
    assert backup._request_held(request, backups, repository, now, deadline) is None

    tenants.apply(cluster, tenants.small_tenant("clone", namespace=namespace))
    cluster.kubectl("patch", "stackforgetenants.stackforge.io", "clone", "-n", namespace,
                    "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                        "bootstrap": {"method": "Physical", "sourceTenant": "shared",
                                      "sourceNamespace": namespace, "backupPolicy": "nightly",
                                      "repositoryPath": repository,
                                      "recoveryTarget": into_first, "startTime": started}}}))
    held = backup._request_held(request, backups, repository, now, deadline)
    assert held is not None and f"StackForgeTenant {namespace}/clone" in held, held
    # Past the policy's deadline a restore holds nothing: backups must not stop for ever.
    assert backup._request_held(request, backups, repository, now + deadline,
                                deadline) is None


def _egress_rules(cluster: ClusterHandle, namespace: str, name: str) -> list[Any]:
    found = client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(name, namespace)
    assert found.spec is not None and found.spec.policy_types == ["Egress"]
    return list(found.spec.egress or [])


def test_an_isolated_tenants_runners_lose_their_way_out_even_while_the_policy_is_stalled(
        cluster: ClusterHandle, namespace: str, s3_server: S3Server,  # noqa: F811
        s3_bucket: str) -> None:  # noqa: F811
    """The runbook's incident: the responder isolates the tenant and deletes the
    leaked bucket credentials. That stalls the policy (its Secret is missing), and
    the stalled reconcile returned before applying anything: the runners' egress
    to the bucket stayed open for the whole isolation."""
    _nightly_in(cluster, namespace, s3_server, s3_bucket)
    egress = backup_network.runner_egress_name("nightly")
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert _egress_rules(cluster, namespace, egress), "the runners reach the bucket first"

    client.CoreV1Api(cluster.api).delete_namespaced_secret("s3-credentials", namespace)
    cluster.kubectl("patch", "stackforgetenants.stackforge.io", "shared", "-n", namespace,
                    "--type=merge", "-p", json.dumps({"spec": {"isolate": True}}))
    outcome = backup.reconcile(_policy(cluster, namespace, "nightly"))
    assert outcome.requeue_after == backup.STALLED_SECONDS
    stalled = tenants.condition(_policy(cluster, namespace, "nightly"), "Stalled") or {}
    assert stalled.get("status") == "True", stalled
    assert _egress_rules(cluster, namespace, egress) == []
    # A policy that archives nothing gets no archive egress to empty.
    with pytest.raises(ApiException) as absent:
        client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
            backup_network.archive_egress_name("nightly"), namespace)
    assert absent.value.status == 404


def test_a_run_whose_pod_is_gone_reads_as_its_manifest_says_not_failed(
        cluster: ClusterHandle, namespace: str, s3_server: S3Server,  # noqa: F811
        s3_bucket: str) -> None:  # noqa: F811
    """A Job Complete whose pod was collected (its node deleted) has no result to
    read: it was taken as failed (JobFailed, under an id no manifest has), newer
    than the backup it made, and LastBackupSucceeded turned False over it."""
    _nightly_in(cluster, namespace, s3_server, s3_bucket)
    store = BackupStore(StoreConfig(bucket=s3_bucket), client=s3_server.client())
    _ask(cluster, namespace, "by-hand")
    backup.reconcile(_policy(cluster, namespace, "nightly"))
    asked = builders.manual_job_name("nightly", "by-hand")
    assert asked in _policy_jobs(cluster, namespace)
    made = _dump_of_shared(store, datetime.now(UTC).replace(microsecond=0)
                           - timedelta(minutes=3))  # the run's backup, as its runner left it
    kwok_jobs.record_success(cluster, namespace, asked)
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", f"job-name={asked}",
                    "--ignore-not-found", "--wait=true")

    backup.reconcile(_policy(cluster, namespace, "nightly"))

    observed = _policy(cluster, namespace, "nightly")["status"]
    succeeded = tenants.condition({"status": observed}, "LastBackupSucceeded") or {}
    assert succeeded.get("status") == "True", observed
    assert observed["lastRun"]["id"] == made, observed["lastRun"]
