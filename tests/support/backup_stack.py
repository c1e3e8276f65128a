"""A tenant with a real database and a BackupPolicy's prerequisites, for backup and drill tests."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.kubelet import RunnerKubelet
from tests.support.postgres_server import PostgresServer, seed_small
from tests.support.s3_server import S3Server

PLURAL = "backuppolicies"


@dataclass
class Stack:
    tenant: str
    namespace: str
    database: str
    seeded: dict[str, int]
    bucket: str
    kubelet: RunnerKubelet


def policy_manifest(name: str, tenant: str, namespace: str, bucket: str, endpoint: str,
            **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenantRef": {"name": tenant},
        "schedule": "0 2 * * *",
        "targets": ["Postgres", "Configuration"],
        "storage": {
            "bucket": bucket, "prefix": "backups", "endpoint": endpoint, "region": "us-east-1",
            "forcePathStyle": True, "credentialsSecretRef": {"name": "s3-credentials"},
        },
        "retention": {"keepLast": 5},
    }
    spec.update(overrides)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "BackupPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def get_policy(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, name)
    return found


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return {}


def trigger_backup(cluster: ClusterHandle, namespace: str, name: str, request: str) -> None:
    cluster.kubectl("annotate", "--overwrite", "-n", namespace, f"sfbp/{name}",
                    f"stackforge.io/backup-now={request}")


def database_role(server: PostgresServer, cluster: ClusterHandle, namespace: str,
                   database: str) -> None:
    """What the tenant's PostgreSQL does at start: the app role with the Secret's password."""
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(
        "postgres-credentials", namespace)
    password = base64.b64decode(secret.data["password"]).decode()
    server.psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') "
        "THEN CREATE ROLE app LOGIN; END IF; END $$;\n"
        "ALTER ROLE app PASSWORD :'pw';", variables={"pw": password})
    server.psql("GRANT USAGE ON SCHEMA shop, public TO app;\n"
                "GRANT SELECT ON ALL TABLES IN SCHEMA shop, public TO app;\n"
                "GRANT SELECT ON ALL SEQUENCES IN SCHEMA shop, public TO app;", database)


@pytest.fixture
def stack(
    cluster: ClusterHandle, operator: OperatorProcess, postgres_server: PostgresServer,
    s3_server: S3Server, s3_bucket: str,
) -> Iterator[Stack]:
    name = f"vault-{uuid.uuid4().hex[:5]}"
    namespace = f"tenant-{name}"
    database = f"db_{name.replace('-', '_')}"
    tenants.apply(cluster, tenants.small_tenant(
        name, components={"postgres": {"database": database}, "apps": []}))
    tenants.wait_condition(cluster, name, "Ready", "True")
    postgres_server.create_database(database)
    seeded = seed_small(postgres_server, database)
    database_role(postgres_server, cluster, namespace, database)
    tenants.put_secret(cluster, namespace, "s3-credentials", {
        "AWS_ACCESS_KEY_ID": s3_server.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.credentials.secret_access_key,
    })
    kubelet = RunnerKubelet(
        cluster, services={f"postgres.{namespace}.svc": ("127.0.0.1", postgres_server.port)},
        path_prefix=str(postgres_server.bin_dir))
    try:
        yield Stack(name, namespace, database, seeded, s3_bucket, kubelet)
    finally:
        # In the background: names are unique, and the (module-scoped) operator
        # finishes the deletion while the next test runs.
        tenants.discard(cluster, name)
        postgres_server.drop_database(database)


def run_backup(cluster: ClusterHandle, stack: Stack, policy: str, request: str) -> Any:
    trigger_backup(cluster, stack.namespace, policy, request)
    return stack.kubelet.run_next(stack.namespace, "backup", timeout=120)


