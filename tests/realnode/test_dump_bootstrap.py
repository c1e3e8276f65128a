"""A new tenant from another tenant's logical dump (spec.bootstrap.logical), on the real
node: the runner restores the nightly pg_dump into the new primary with its owners and
grants, its apps start only after it, and the source's bucket gets nothing from it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.builders.backup_network import DUMP_EGRESS
from stackforge_operator.builders.bootstrap import COPIES, DUMP_JOB
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import runs, stack
from tests.realnode.runs import Tenant
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of, status_of
from tests.support.s3_server import S3Server

# As the superuser: a role no tenant spec names owns one table (which the
# application role, the one that dumps, may read), and is granted another.
OWNED_SQL = """CREATE ROLE reporting NOLOGIN;
CREATE TABLE treasure (id int); INSERT INTO treasure SELECT generate_series(1, 7);
ALTER TABLE treasure OWNER TO reporting;
GRANT SELECT ON treasure TO "{app}";"""
APP_SQL = ("CREATE TABLE journal (id int PRIMARY KEY);"
           "INSERT INTO journal SELECT generate_series(1, 20);"
           "GRANT SELECT ON journal TO reporting;")


@pytest.fixture(scope="module")
def dumped(real_cluster: ClusterHandle, real_operator: OperatorProcess,
           pod_s3: S3Server) -> Iterator[tuple[Tenant, str]]:
    """A seeded tenant with owners and grants of its own, and one dump of it."""
    source = runs.seeded_tenant(real_cluster, pod_s3, "dmp")
    ns = source.namespace
    stack.psql(real_cluster, ns, OWNED_SQL.format(app=runs.app_owner(real_cluster, ns)))
    stack.psql(real_cluster, ns, APP_SQL, as_app=True)
    runs.apply(real_cluster, runs.policy_manifest("nightly", source, pod_s3.endpoint,
                                                  targets=["Postgres"]))
    ran = runs.run_backup(real_cluster, ns, "nightly", "first")
    assert ran.returncode == 0, ran.termination_message + runs.explain(real_cluster, ns)
    yield source, str(ran.outcome()["runId"])
    tenants.discard(real_cluster, source.name)


def _new_tenant(name: str, source: str, **logical: Any) -> dict[str, Any]:
    manifest = stack.postgres_only(name)
    manifest["spec"]["components"]["apps"] = [{
        "name": "api", "image": TESTAPP_IMAGE, "port": 8080, "healthCheckPath": "/healthz",
        "replicas": 1, "env": {"PORT": "8080"}}]
    manifest["spec"]["bootstrap"] = {"logical": {"tenant": source, **logical}}
    return manifest


def _objects(s3: S3Server, bucket: str) -> dict[str, str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def _allow(cluster: ClusterHandle, source: Tenant, namespaces: list[str]) -> None:
    cluster.kubectl("patch", "backuppolicies.stackforge.io", "nightly", "-n", source.namespace,
                    "--type=merge", "-p", json.dumps(
                        {"spec": {"allowedDumpRestoreNamespaces": namespaces}}))


def _rollup(cluster: ClusterHandle, name: str, reason: str) -> dict[str, Any]:
    """The tenant's Stalled or Reconciling condition, once it is True for ``reason``."""
    found = tenants.get(cluster, name, tenants.namespace_of(name)) or {}
    return next((c for c in (found.get("status") or {}).get("conditions") or []
                 if c["type"] in ("Stalled", "Reconciling") and c["status"] == "True"
                 and c.get("reason") == reason), {})


def test_a_failed_dump_restore_stalls_the_new_tenant_with_its_reason_and_holds_its_apps(
        real_cluster: ClusterHandle, dumped: tuple[Tenant, str]) -> None:
    source, _ = dumped
    name = f"{source.name}-bad"
    ns = tenants.namespace_of(name)
    _allow(real_cluster, source, [ns])
    try:
        tenants.apply(real_cluster, _new_tenant(name, source.name,
                                                backupId="20200101T000000Z-nosuch"))
        stalled = tenants.eventually(
            lambda: _rollup(real_cluster, name, "BootstrapFailed"), timeout=240,
            interval=1)
        assert "BackupNotFound" in stalled["message"], stalled
        assert f"delete Job {DUMP_JOB}" in stalled["message"], stalled
        found = tenants.get(real_cluster, name, ns) or {}
        assert runs.condition_of(found, "Ready")["status"] == "False"
        assert found["status"]["bootstrap"].get("completionTime") is None, found["status"]
        apps = client.AppsV1Api(real_cluster.api)
        assert apps.read_namespaced_deployment("api", ns).spec.replicas == 0
        # The failed Job stays for a person to read (and delete, to try again).
        assert client.BatchV1Api(real_cluster.api).read_namespaced_job(DUMP_JOB, ns)
    finally:
        tenants.discard(real_cluster, name, ns)


def test_a_tenant_created_from_a_dump_has_its_rows_owners_and_grants(
        real_cluster: ClusterHandle, dumped: tuple[Tenant, str], pod_s3: S3Server) -> None:
    source, run_id = dumped
    name = f"{source.name}-copy"
    ns = tenants.namespace_of(name)
    rows = runs.table_checksums(real_cluster, source.namespace, stack.DATABASE)
    owned = stack.psql(real_cluster, source.namespace, stack.OWNERSHIP_SQL)
    assert "treasure|reporting|" in owned and "reporting=r/" in owned, owned
    before = _objects(pod_s3, source.bucket)
    _allow(real_cluster, source, [])
    try:
        # Not allowed by the source's policy: refused, naming the field; nothing made.
        tenants.apply(real_cluster, _new_tenant(name, source.name))
        refused = tenants.eventually(
            lambda: _rollup(real_cluster, name, "RestoreNotAllowed"), timeout=60,
            interval=1)
        assert "spec.allowedDumpRestoreNamespaces" in refused["message"], refused
        apps = client.AppsV1Api(real_cluster.api)
        assert not apps.list_namespaced_stateful_set(ns).items

        _allow(real_cluster, source, [ns])
        batch = client.BatchV1Api(real_cluster.api)
        # (the runner's Job exists and has not completed, the app's replicas)
        seen: list[tuple[bool, int]] = []

        def restored() -> dict[str, Any] | None:
            # The app first, then the Job: an app scaled up means the operator saw the
            # Job complete before, so the Job read after is complete or pruned.
            deployments = {name_of(d): d for d in apps.list_namespaced_deployment(ns).items}
            jobs = {name_of(j): j for j in batch.list_namespaced_job(ns).items}
            if "api" in deployments:
                job = jobs.get(DUMP_JOB)
                running = job is not None and not any(
                    c.type == "Complete" and c.status == "True"
                    for c in status_of(job).conditions or [])
                seen.append((running, int(deployments["api"].spec.replicas or 0)))
            found = tenants.get(real_cluster, name, ns) or {}
            done = ((found.get("status") or {}).get("bootstrap") or {}).get("completionTime")
            ready = runs.condition_of(found, "Ready").get("status") == "True"
            return found if done and ready else None

        try:
            found = tenants.eventually(restored, timeout=300, interval=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{stack.diagnosis(real_cluster, ns)}") from None
        # The app was held at zero while the dump restored, and never ran before it was in.
        assert (True, 0) in seen and not [n for running, n in seen if running and n], seen
        record = found["status"]["bootstrap"]
        assert record["method"] == "Logical" and record["backupId"] == run_id, record
        assert record["sourceTenant"] == source.name and record["backupPolicy"] == "nightly"
        assert runs.table_checksums(real_cluster, ns, stack.DATABASE) == rows
        assert stack.psql(real_cluster, ns, stack.OWNERSHIP_SQL) == owned
        # The role the dump names was made, and nobody can log in as it.
        assert stack.psql(real_cluster, ns, "SELECT rolcanlogin FROM pg_roles "
                                            "WHERE rolname = 'reporting'") == "f"
        # The application role reads what it was granted (psql prints its SET ROLE first).
        assert stack.psql(real_cluster, ns, "SELECT count(*) FROM treasure",
                          as_app=True).splitlines()[-1] == "7"
        tenants.eventually(lambda: status_of(apps.read_namespaced_deployment("api", ns))
                           .ready_replicas == 1, timeout=120, interval=1)

        # What the restore needed goes with it: the Job, its egress, the copies.
        core = client.CoreV1Api(real_cluster.api)
        tenants.eventually(lambda: not {name_of(s) for s in core.list_namespaced_secret(
            ns).items} & COPIES, timeout=60, interval=1)
        tenants.eventually(lambda: not client.BatchV1Api(real_cluster.api)
                           .list_namespaced_job(ns).items, timeout=60, interval=1)
        assert DUMP_EGRESS not in {name_of(p) for p in client.NetworkingV1Api(
            real_cluster.api).list_namespaced_network_policy(ns).items}
        # Nothing was written into the source's bucket.
        assert _objects(pod_s3, source.bucket) == before
    finally:
        tenants.discard(real_cluster, name, ns)

