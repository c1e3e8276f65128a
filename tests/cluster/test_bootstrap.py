"""reconcile/bootstrap.py against the API server: a clone's restore under way
keeps to the source policy it began from, and is recorded complete once its
primary serves even when the source went meanwhile; a tenant made again in
place over its kept volume restores nothing over it; a dump's passed Job
outlives the pass that records it.

Re-chosen at every pass, the archiving policy of the source could be another
one by now (its owner moving the archive to a new bucket): the restore then
paired the new policy's bucket and keys with the old repository path, and the
primary's settings changed mid-restore. The nodes are kwok's; nothing runs.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.builders.bootstrap import DUMP_JOB
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.effective import resolve
from stackforge_operator.models.tenant import BootstrapStatus, StackForgeTenantSpec
from stackforge_operator.reconcile import archiving_policy, bootstrap, tenant
from tests.support import kwok_jobs, tenants
from tests.support.clusters import ClusterHandle
from tests.support.secrets import S3_KEYS, put_secret

pytestmark = pytest.mark.usefixtures("kube_as_operator", "default_image_catalog")


@pytest.fixture(autouse=True)
def _names_free(cluster: ClusterHandle) -> None:
    """Each test makes its tenants anew: an earlier test's, its namespace still
    going, would keep the name (TenantNameTaken) and be the only source a clone
    may restore from."""
    tenants.remove_namesakes(cluster, "origin", "copy", "dropped")

API = f"{API_GROUP}/{API_VERSION}"
STARTED = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _policy(name: str, namespace: str, bucket: str, *, clone_namespace: str,
            archives: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenantRef": {"name": "origin"}, "schedule": "0 2 * * *",
        "storage": {"bucket": bucket, "endpoint": "https://10.1.2.3:9000",
                    "credentialsSecretRef": {"name": "origin-s3"}},
        "retention": {"keepLast": 3}}
    if archives:
        spec["continuousArchiving"] = {
            "repositoryCipherSecretRef": {"name": "origin-cipher", "key": "passphrase"},
            "allowedRestoreNamespaces": [clone_namespace]}
    return {"apiVersion": API, "kind": "BackupPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_a_restore_under_way_keeps_to_the_policy_it_began_from(
        cluster: ClusterHandle, namespace: str) -> None:
    source_ns, clone_ns = namespace, f"{namespace}-c"[:63]
    tenants.apply(cluster, tenants.small_tenant("origin", namespace=source_ns))
    tenants.ensure_namespace(cluster, clone_ns)
    try:
        put_secret(cluster, source_ns, "origin-s3", S3_KEYS)
        put_secret(cluster, source_ns, "origin-cipher", {"passphrase": "not-a-real-one"})
        # The restore began from "archive-old"; its owner has since moved the
        # archive: "archive-new" archives, "archive-old" takes dumps only.
        for policy in (_policy("archive-old", source_ns, "old-bucket", clone_namespace=clone_ns,
                               archives=False),
                       _policy("archive-new", source_ns, "new-bucket", clone_namespace=clone_ns,
                               archives=True)):
            cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                            input=json.dumps(policy))
        spec = StackForgeTenantSpec.model_validate({
            **tenants.small_tenant("copy")["spec"],
            "bootstrap": {"recovery": {"tenant": "origin"}}})
        clone = resolve("copy", spec, namespace=clone_ns)
        recorded = BootstrapStatus(
            source_tenant="origin", source_namespace=source_ns, backup_policy="archive-old",
            repository_path="/stackforge/_pgbackrest/origin/7400000000000000001-x",
            recovery_target="2026-12-06T08:00:00Z", start_time=STARTED)

        prepared = bootstrap.prepare(clone, spec, recorded, STARTED)

        # Not the new policy's bucket with the old repository: stopped, saying why.
        assert isinstance(prepared, bootstrap.Held), prepared
        assert prepared.reason == "BootstrapSourceNotFound"
        assert "archive-old" in prepared.message and "no longer archives" in prepared.message
    finally:
        cluster.kubectl("delete", "namespace", clone_ns, "--wait=false", check=False)


def test_a_restore_under_way_stops_when_its_policy_moves_the_archive(
        cluster: ClusterHandle, namespace: str) -> None:
    """The source policy's bucket edited mid-restore: the primary was built
    again with the new bucket and the old repository path, and restarted its
    restore from a place that is not the archive."""
    source_ns, clone_ns = namespace, f"{namespace}-m"[:63]
    source = f"moved-{namespace[-12:]}"
    tenants.apply(cluster, tenants.small_tenant(source, namespace=source_ns))
    tenants.ensure_namespace(cluster, clone_ns)
    try:
        put_secret(cluster, source_ns, "origin-s3", S3_KEYS)
        put_secret(cluster, source_ns, "origin-cipher", {"passphrase": "not-a-real-one"})
        policy = _policy("archive", source_ns, "new-bucket", clone_namespace=clone_ns,
                         archives=True)
        policy["spec"]["tenantRef"]["name"] = source
        cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                        input=json.dumps(policy))
        spec = StackForgeTenantSpec.model_validate({
            **tenants.small_tenant("copy")["spec"],
            "bootstrap": {"recovery": {"tenant": source}}})
        clone = resolve(f"copy-{namespace[-12:]}", spec, namespace=clone_ns)
        began_on = BackupPolicySpec.model_validate({
            **policy["spec"], "storage": {**policy["spec"]["storage"], "bucket": "old-bucket"}})
        recorded = BootstrapStatus(
            source_tenant=source, source_namespace=source_ns, backup_policy="archive",
            repository_path=f"/stackforge/_pgbackrest/{source}/7400000000000000001-x",
            recovery_target="2026-12-06T08:00:00Z",
            archive_fingerprint=archiving_policy.fingerprint(began_on), start_time=STARTED)

        moved = bootstrap.prepare(clone, spec, recorded, STARTED)

        assert isinstance(moved, bootstrap.Held), moved
        assert moved.reason == "BootstrapSourceChanged" and "archive" in moved.message
        # Where it began, the restore goes on with the policy's settings.
        same = recorded.model_copy(update={"archive_fingerprint": archiving_policy.fingerprint(
            BackupPolicySpec.model_validate(policy["spec"]))})
        going = bootstrap.prepare(clone, spec, same, STARTED)
        assert isinstance(going, bootstrap.Prepared) and going.restore is not None
        assert going.restore.storage.bucket == "new-bucket"
    finally:
        cluster.kubectl("delete", "namespace", clone_ns, "--wait=false", check=False)


def test_a_clone_restores_from_the_tenant_that_holds_the_name_not_a_namesake(
        cluster: ClusterHandle, namespace: str) -> None:
    """Of two tenants of one name, the one made later may not run (TenantNameTaken),
    yet its owner chooses its policy: bucket, prefix, keys and which namespaces may
    restore. The clone took whichever the cluster listed first, by namespace."""
    source = f"dup-{namespace[-12:]}"
    holder_ns, namesake_ns = f"{namespace}-z"[:63], f"{namespace}-a"[:63]
    policies = {}
    try:
        for source_ns, bucket in ((holder_ns, "holder-bucket"), (namesake_ns, "other-bucket")):
            tenants.apply(cluster, tenants.small_tenant(source, namespace=source_ns))
            put_secret(cluster, source_ns, "origin-s3", S3_KEYS)
            put_secret(cluster, source_ns, "origin-cipher", {"passphrase": "not-a-real-one"})
            policy = _policy("archive", source_ns, bucket, clone_namespace=namespace,
                             archives=True)
            policy["spec"]["tenantRef"]["name"] = source
            cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                            input=json.dumps(policy))
            policies[source_ns] = policy
            time.sleep(1.1)  # whole seconds: the first made is the older, and keeps the name
        spec = StackForgeTenantSpec.model_validate({
            **tenants.small_tenant("copy")["spec"],
            "bootstrap": {"recovery": {"tenant": source}}})
        clone = resolve(f"copy-{namespace[-12:]}", spec, namespace=namespace)
        recorded = BootstrapStatus(
            source_tenant=source, source_namespace=holder_ns, backup_policy="archive",
            repository_path=f"/stackforge/_pgbackrest/{source}/7400000000000000001-x",
            recovery_target="2026-12-06T08:00:00Z",
            archive_fingerprint=archiving_policy.fingerprint(
                BackupPolicySpec.model_validate(policies[holder_ns]["spec"])),
            start_time=STARTED)

        going = bootstrap.prepare(clone, spec, recorded, STARTED)

        assert isinstance(going, bootstrap.Prepared) and going.restore is not None, going
        assert going.restore.storage.bucket == "holder-bucket"
    finally:
        for source_ns in (holder_ns, namesake_ns):
            cluster.kubectl("delete", "namespace", source_ns, "--wait=false", check=False)


def _claim(cluster: ClusterHandle, namespace: str, name: str) -> datetime:
    """A bound-or-not claim of that name; its creationTimestamp."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    made = client.CoreV1Api(cluster.api).read_namespaced_persistent_volume_claim(
        name, namespace).metadata
    assert made is not None and made.creation_timestamp is not None
    return made.creation_timestamp.astimezone(UTC)


def test_a_tenant_made_again_over_its_kept_volume_restores_nothing_over_it(
        cluster: ClusterHandle, namespace: str) -> None:
    """Claims outlive their tenant: made again in place (a GitOps sync), spec.bootstrap
    and all, a clone recorded a restore it never did, and a dump's Job ran
    pg_restore into the live database and held the apps at zero for ever. (Its
    source here is long gone, as it may well be by then: that must not matter.)"""
    def clone_of(bootstrap_spec: dict[str, Any]) -> tuple[Any, StackForgeTenantSpec]:
        spec = StackForgeTenantSpec.model_validate({
            **tenants.small_tenant("copy")["spec"], "bootstrap": bootstrap_spec})
        return resolve("copy", spec, namespace=namespace), spec

    # A read replica's claim is no database of the primary's.
    made = _claim(cluster, namespace, "data-postgres-replica-0")
    later = made + timedelta(seconds=30)
    clone, spec = clone_of({"recovery": {"tenant": "long-gone"}})
    assert isinstance(bootstrap.prepare(clone, spec, None, later, tenant_created=later),
                      bootstrap.Held)
    made = _claim(cluster, namespace, "data-postgres-0")
    for bootstrap_spec in ({"recovery": {"tenant": "long-gone"}},
                           {"logical": {"tenant": "long-gone"}}):
        clone, spec = clone_of(bootstrap_spec)

        found = bootstrap.prepare(clone, spec, None, later, tenant_created=later)

        assert isinstance(found, bootstrap.Prepared), found
        assert found.restore is None and found.dump is None and found.copies == []
        assert found.recorded.kept_volume == "data-postgres-0"
        assert found.recorded.completion_time == later
        # The claim of the tenant's own bootstrap (made after it, its start's
        # status write lost) is not one found again: the source is looked for.
        own = bootstrap.prepare(clone, spec, None, later, tenant_created=made)
        assert isinstance(own, bootstrap.Held) and own.reason == "BootstrapSourceNotFound"


def test_a_restore_whose_source_went_is_recorded_once_its_primary_serves(
        cluster: ClusterHandle, namespace: str) -> None:
    """The source deleted mid-restore (a clone made, then the broken original
    dropped): the clone was held, nothing applied, and its completion never
    recorded, though its primary went on and finished the restore."""
    manifest = tenants.small_tenant("copy", namespace=namespace,
                                    bootstrap={"recovery": {"tenant": "dropped"}})
    tenants.apply(cluster, manifest)
    began = BootstrapStatus(
        source_tenant="dropped", source_namespace=f"{namespace}-gone", backup_policy="archive",
        repository_path="/stackforge/_pgbackrest/dropped/7400000000000000001-x",
        recovery_target="2026-12-06T08:00:00Z", start_time=STARTED)
    cluster.kubectl("patch", "stackforgetenants.stackforge.io", "copy", "-n", namespace,
                    "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                        "bootstrap": began.model_dump(mode="json", by_alias=True,
                                                      exclude_none=True)}}))
    # Still restoring: held, saying why.
    tenant.reconcile(tenants.get(cluster, "copy", namespace) or {})
    held = tenants.get(cluster, "copy", namespace) or {}
    assert (tenants.condition(held, "Stalled") or {}).get("reason") == \
        "BootstrapSourceNotFound", held["status"]
    assert held["status"]["bootstrap"].get("completionTime") is None
    # Its primary, started before the source went, finishes (kwok's pod is Ready).
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "postgres"},
        "spec": {"replicas": 1, "serviceName": "postgres",
                 "selector": {"matchLabels": {"app": "restoring"}},
                 "template": {"metadata": {"labels": {"app": "restoring"}}, "spec": {
                     "containers": [{"name": "postgres", "image": "postgres:restoring"}]}}}}))

    def ready() -> int:
        found = client.AppsV1Api(cluster.api).read_namespaced_stateful_set("postgres", namespace)
        return (found.status.ready_replicas or 0) if found.status else 0

    tenants.eventually(lambda: ready() >= 1, timeout=60, interval=0.5)

    tenant.reconcile(tenants.get(cluster, "copy", namespace) or {})

    restored = tenants.get(cluster, "copy", namespace) or {}
    assert restored["status"]["bootstrap"].get("completionTime"), restored["status"]
    assert (tenants.condition(restored, "Stalled") or {}).get("status") != "True"
    events = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=copy,reason=RestoreComplete").items
    assert events, "no RestoreComplete event"


def _passed_runner_pod(cluster: ClusterHandle, namespace: str) -> None:
    """A pod of the dump's Job whose runner said "Passed" as it ended."""
    kwok_jobs.runner_said(cluster, namespace, DUMP_JOB, "restore",
                          {"verdict": "Passed", "backupId": "20261206T020000Z-a1b2c3"})


def test_a_dump_restores_job_is_pruned_only_after_its_success_is_recorded(
        cluster: ClusterHandle, namespace: str) -> None:
    """The pass that saw the Job pass pruned it before its status write: an
    operator dying in between left no record and no Job, and the next pass
    started another restore over the restored database."""
    source_ns, clone_ns = namespace, f"{namespace}-d"[:63]
    source, clone = f"src-{namespace[-12:]}", f"dst-{namespace[-12:]}"
    tenants.apply(cluster, tenants.small_tenant(source, namespace=source_ns))
    tenants.ensure_namespace(cluster, clone_ns)
    try:
        put_secret(cluster, source_ns, "origin-s3", S3_KEYS)
        policy = _policy("nightly", source_ns, "dumps", clone_namespace=clone_ns,
                         archives=False)
        policy["spec"]["tenantRef"]["name"] = source
        policy["spec"]["allowedDumpRestoreNamespaces"] = [clone_ns]
        cluster.kubectl("apply", "--server-side", "--field-manager=tests", "-f", "-",
                        input=json.dumps(policy))
        tenants.apply(cluster, tenants.small_tenant(
            clone, namespace=clone_ns, bootstrap={"logical": {"tenant": source}}))
        batch = client.BatchV1Api(cluster.api)

        def job_made() -> Any:
            # The primary Ready (kwok's pod), the next pass makes the runner's Job.
            tenant.reconcile(tenants.get(cluster, clone, clone_ns) or {})
            found = batch.list_namespaced_job(clone_ns).items
            return [j for j in found if j.metadata and j.metadata.name == DUMP_JOB]

        tenants.eventually(job_made, timeout=60, interval=1)
        _passed_runner_pod(cluster, clone_ns)
        kwok_jobs.record_success(cluster, clone_ns, DUMP_JOB)

        tenant.reconcile(tenants.get(cluster, clone, clone_ns) or {})

        recorded = (tenants.get(cluster, clone, clone_ns) or {})["status"]["bootstrap"]
        assert recorded.get("completionTime") and recorded.get("backupId") == \
            "20261206T020000Z-a1b2c3", recorded
        # Still there: had the status write been lost, the next pass sees it passed.
        assert batch.read_namespaced_job(DUMP_JOB, clone_ns)

        tenant.reconcile(tenants.get(cluster, clone, clone_ns) or {})

        gone = batch.list_namespaced_job(clone_ns).items
        assert not [j for j in gone if j.metadata and j.metadata.name == DUMP_JOB
                    and not j.metadata.deletion_timestamp], gone
    finally:
        cluster.kubectl("delete", "namespace", clone_ns, "--wait=false", check=False)

