"""A backup and a drill, each a real pod in the operator's image on the real node:
pg_dump against the tenant's PostgreSQL pod through its Service name, into an
S3 server the pods reach over TLS; the drill restores that dump into a scratch
PostgreSQL pod and checks the seeded rows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.devcluster.node.realnode import NODE_NAME
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import runs, stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import status_of
from tests.support.s3_server import S3Server

OPERATOR_IMAGE = "localhost/stackforge/stackforge-operator:0.1.0"


@pytest.fixture
def seeded_tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess,
                  pod_s3: S3Server) -> Iterator[str]:
    name = f"bk-{uuid.uuid4().hex[:5]}"
    tenants.apply(real_cluster, stack.postgres_only(name))
    stack.wait_ready(real_cluster, name)
    ns = tenants.namespace_of(name)
    stack.psql(real_cluster, ns, stack.SEED_SQL, as_app=True)
    runs.put_s3_secrets(real_cluster, ns, pod_s3)
    yield name
    tenants.discard(real_cluster, name)


def test_backup_and_drill_run_as_pods_on_the_node(
        real_cluster: ClusterHandle, seeded_tenant: str, pod_s3: S3Server) -> None:
    ns = tenants.namespace_of(seeded_tenant)
    bucket = pod_s3.create_bucket()
    policy = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "BackupPolicy",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {
            "tenantRef": {"name": seeded_tenant},
            "schedule": "0 2 * * *",
            # Runs on request only: one the schedule starts at 02:00 would be a second.
            "suspend": True,
            "targets": ["Postgres"],
            "storage": {"bucket": bucket, "prefix": "backups", "endpoint": pod_s3.endpoint,
                        "region": "us-east-1", "forcePathStyle": True,
                        "credentialsSecretRef": {"name": "s3-credentials"},
                        "endpointCA": {"name": "s3-ca"}},
            "retention": {"keepLast": 3},
        },
    }
    real_cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(policy))
    real_cluster.kubectl("annotate", "--overwrite", "-n", ns, "sfbp/nightly",
                         "stackforge.io/backup-now=first")

    def backed_up() -> dict[str, Any] | None:
        found = runs.custom(real_cluster, ns, "backuppolicies", "nightly")
        last = (found.get("status") or {}).get("lastRun") or {}
        return found if last.get("result") in ("Succeeded", "Failed") else None

    try:
        done = tenants.eventually(backed_up, timeout=240, interval=1)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{runs.explain(real_cluster, ns)}") from None
    assert done["status"]["lastRun"]["result"] == "Succeeded", (
        json.dumps(done["status"], indent=1) + runs.explain(real_cluster, ns))
    assert runs.condition_of(done, "LastBackupSucceeded")["status"] == "True"

    # The Job's pod ran, in the operator's image, on the real node, and exited 0.
    # The operator reads the run's result from S3, which can be there before the
    # kubelet has reported the container terminated: wait for the pod's own word.
    core = client.CoreV1Api(real_cluster.api)

    def runner_terminated() -> Any:
        runner = next(p for p in core.list_namespaced_pod(
            ns, label_selector="stackforge.io/runner=backup").items)
        statuses = status_of(runner).container_statuses or []
        state = statuses[0].state if statuses else None
        return runner if state is not None and state.terminated is not None else None

    runner = tenants.eventually(runner_terminated, timeout=60, interval=0.5)
    assert runner.spec.node_name == NODE_NAME
    assert runner.spec.containers[0].image == OPERATOR_IMAGE
    assert runner.status.container_statuses[0].state.terminated.exit_code == 0
    run_id = done["status"]["lastSuccessfulRun"]["id"]
    keys = [o["Key"] for o in pod_s3.client().list_objects_v2(
        Bucket=bucket, Prefix=f"backups/{seeded_tenant}/{run_id}/").get("Contents", [])]
    assert any(k.endswith("manifest.json") for k in keys), keys

    drill = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DRDrill",
        "metadata": {"name": "restore-check", "namespace": ns},
        "spec": {
            "tenantRef": {"name": seeded_tenant},
            "backupPolicyRef": {"name": "nightly"},
            "once": True,
            "objectives": {"rtoSeconds": 600, "rpoSeconds": 3600},
            "checks": {"queries": [
                {"name": "customers", "sql": "SELECT count(*) FROM shop.customers",
                 "expectedValue": str(stack.CUSTOMERS)},
                {"name": "orders", "sql": "SELECT count(*) FROM shop.orders",
                 "expectedValue": str(stack.ORDERS)},
            ]},
        },
    }
    real_cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(drill))

    def drilled() -> dict[str, Any] | None:
        found = runs.custom(real_cluster, ns, "drdrills", "restore-check")
        st = found.get("status") or {}
        return found if st.get("lastResult") and not st.get("activeRun") else None

    try:
        finished = tenants.eventually(drilled, timeout=300, interval=1)
    except AssertionError as error:
        sandboxes = real_cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        raise AssertionError(f"{error}\n{sandboxes}") from None
    result = finished["status"]["lastResult"]
    assert result["verdict"] == "Passed", json.dumps(finished["status"], indent=1)
