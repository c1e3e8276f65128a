"""DRDrills in cluster tests: manifests, a stack with one backup, and playing the restore pod."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION
from tests.support.backup_stack import Stack, policy_manifest, run_backup
from tests.support.clusters import ClusterHandle
from tests.support.postgres_server import PostgresServer
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually

PLURAL = "drdrills"


def drill_manifest(name: str, stack: Stack, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenantRef": {"name": stack.tenant},
        "backupPolicyRef": {"name": "nightly"},
        "once": True,
        "objectives": {"rtoSeconds": 600, "rpoSeconds": 3600},
        "checks": {"queries": [
            {"name": "customers", "sql": "SELECT count(*) FROM shop.customers",
             "expectedValue": "500"},
            {"name": "no-orphans", "expectedRows": 0, "sql":
             "SELECT o.id FROM shop.orders o LEFT JOIN shop.customers c "
             "ON c.id = o.customer_id WHERE c.id IS NULL"},
        ]},
    }
    body.update(spec)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DRDrill",
            "metadata": {"name": name, "namespace": stack.namespace}, "spec": body}


def get_drill(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, name)
    return found


@pytest.fixture
def backed_up(cluster: ClusterHandle, stack: Stack, s3_server: S3Server) -> Iterator[Stack]:
    """The stack with a BackupPolicy and one complete backup."""
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(
        policy_manifest("nightly", stack.tenant, stack.namespace, stack.bucket,
                        s3_server.endpoint)))
    ran = run_backup(cluster, stack, "nightly", "for-drill")
    assert ran.returncode == 0, ran.stderr
    yield stack


def run_drill_pod(cluster: ClusterHandle, stack: Stack, postgres: PostgresServer,
                   drill: str, *, exclude: str | None = None, timeout: float = 60,
                   start_delay: float = 0.0) -> Any:
    """Play the sandbox's PostgreSQL and kubelet: the restore really happens."""
    def sandbox() -> str | None:
        active = (get_drill(cluster, stack.namespace, drill).get("status") or {}).get("activeRun")
        found = active.get("sandboxNamespace") if active else None
        return found if found != exclude else None

    sandbox_ns: str = eventually(sandbox, timeout=timeout)
    pod = stack.kubelet.wait_for_pod(sandbox_ns, "drill", timeout=90)
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(
        "scratch-credentials", sandbox_ns)

    password = base64.b64decode(secret.data["password"]).decode()
    stack.kubelet.services[f"scratch-postgres.{sandbox_ns}.svc"] = ("127.0.0.1", postgres.port)
    postgres.psql("DROP DATABASE IF EXISTS restore WITH (FORCE); CREATE DATABASE restore;")
    postgres.psql("ALTER ROLE postgres PASSWORD :'pw'", variables={"pw": password})
    try:
        # A slower kubelet (image pull, container start) delays the restore.
        time.sleep(start_delay)
        return sandbox_ns, stack.kubelet.run(pod)
    finally:
        postgres.psql("ALTER ROLE postgres PASSWORD :'pw'", variables={"pw": postgres.password})
        postgres.psql("DROP DATABASE IF EXISTS restore WITH (FORCE)")


def finished_drill(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        drill = get_drill(cluster, namespace, name)
        st = drill.get("status") or {}
        return drill if st.get("lastResult") and not st.get("activeRun") else None

    result: dict[str, Any] = eventually(done, timeout=60)
    return result


