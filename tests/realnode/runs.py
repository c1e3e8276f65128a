"""Backup and drill runs as real pods on the real node: a seeded tenant with the
Secrets a BackupPolicy needs, policies and drills against the shared TLS S3
server, and reading a runner pod's outcome from its termination message."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

from stackforge_operator import API_GROUP, API_VERSION
from tests.realnode import stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import status_of
from tests.support.s3_server import S3Server
from tests.support.tenants import eventually

SEEDED = {"shop.customers": stack.CUSTOMERS, "shop.orders": stack.ORDERS}
RUNNER_LABEL = "stackforge.io/runner"


@dataclass
class Tenant:
    name: str
    namespace: str
    bucket: str


@dataclass
class PodRun:
    """A runner pod that terminated: what ran, its exit code and termination message."""

    namespace: str
    pod: str
    argv: list[str]
    returncode: int
    termination_message: str
    started_at: Any
    finished_at: Any

    def outcome(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.termination_message.strip().splitlines()[-1])
        return loaded


# -- tenants --------------------------------------------------------------------------


def seeded_tenant(cluster: ClusterHandle, s3: S3Server, prefix: str) -> Tenant:
    """A PostgreSQL-only tenant, seeded as its application role, with the S3 Secrets."""
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    tenants.apply(cluster, stack.postgres_only(name))
    stack.wait_ready(cluster, name)
    ns = tenants.namespace_of(name)
    stack.psql(cluster, ns, stack.SEED_SQL, as_app=True)
    put_s3_secrets(cluster, ns, s3)
    return Tenant(name, ns, s3.create_bucket())


@contextlib.contextmanager
def nightly_tenant(cluster: ClusterHandle, s3: S3Server, prefix: str) -> Iterator[Tenant]:
    """A seeded tenant with the BackupPolicy "nightly" (the one drills restore), discarded
    afterwards."""
    made = seeded_tenant(cluster, s3, prefix)
    apply(cluster, policy_manifest("nightly", made, s3.endpoint))
    try:
        yield made
    finally:
        tenants.discard(cluster, made.name)


def put_s3_secrets(cluster: ClusterHandle, namespace: str, s3: S3Server,
                   credentials: str = "s3-credentials") -> None:
    tenants.put_secret(cluster, namespace, credentials, s3.credentials.env())
    assert s3.ca_bundle is not None
    tenants.put_secret(cluster, namespace, "s3-ca", {"ca.crt": s3.ca_bundle.read_text()})


def set_suspended(cluster: ClusterHandle, tenant: Tenant, suspended: bool) -> None:
    """Suspend (every workload scaled to zero, data kept) or resume the tenant, and
    wait for its PostgreSQL pod to be gone, or back and Ready. (Not the tenant's
    Ready: a failing BackupPolicy keeps that False.)"""
    manifest = stack.postgres_only(tenant.name)
    manifest["spec"]["suspend"] = suspended
    tenants.apply(cluster, manifest)
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)

    def settled() -> bool:
        sts = apps.read_namespaced_stateful_set("postgres", tenant.namespace)
        if suspended:
            pods = core.list_namespaced_pod(tenant.namespace,
                                            field_selector="metadata.name=postgres-0").items
            return sts.spec.replicas == 0 and not pods
        status = status_of(sts)
        return bool(sts.spec.replicas == 1 and status.ready_replicas == 1
                    and status.updated_replicas == 1)

    try:
        eventually(settled, timeout=120, interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{explain(cluster, tenant.namespace)}") from None


def psql_db(cluster: ClusterHandle, namespace: str, database: str, sql: str) -> str:
    """SQL as the superuser, over the socket of the tenant's primary, in ``database``."""
    return cluster.kubectl(
        "exec", "-i", "-n", namespace, "postgres-0", "-c", "postgres", "--",
        "psql", "-U", "postgres", "-h", "/var/run/postgresql", "-d", database,
        "-v", "ON_ERROR_STOP=1", "-tA", input=sql).stdout.strip()


def app_owner(cluster: ClusterHandle, namespace: str) -> str:
    return psql_db(cluster, namespace, stack.DATABASE,
                   "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
                   "WHERE datname = current_database()")


def row_counts(cluster: ClusterHandle, namespace: str, database: str) -> dict[str, int]:
    """Exact row count of every user table, keyed ``schema.table``."""
    tables = psql_db(cluster, namespace, database,
                     "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                     "JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE c.relkind IN ('r', 'p') "
                     "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                     "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1").split()
    return {t: int(psql_db(cluster, namespace, database, f"SELECT count(*) FROM {t}"))  # noqa: S608
            for t in tables}


def table_checksums(cluster: ClusterHandle, namespace: str, database: str) -> dict[str, str]:
    """md5 over every row's text, in text order, per table: equal data, equal checksums."""
    query = "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
    return {t: psql_db(cluster, namespace, database, query.format(t))
            for t in row_counts(cluster, namespace, database)}


def pg_restore(cluster: ClusterHandle, namespace: str, database: str, dump: bytes) -> None:
    """Restore a custom-format dump with pg_restore inside the tenant's postgres pod."""
    argv = [*cluster.kubectl_argv, f"--kubeconfig={cluster.kubeconfig}", "exec", "-i",
            "-n", namespace, "postgres-0", "-c", "postgres", "--",
            "pg_restore", "--no-owner", "--no-privileges", "-U", "postgres",
            "-h", "/var/run/postgresql", "-d", database]
    result = subprocess.run(argv, input=dump, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


# -- policies and backups -----------------------------------------------------------


def policy_manifest(name: str, tenant: Tenant, endpoint: str, *, bucket: str | None = None,
                    credentials: str = "s3-credentials", **overrides: Any) -> dict[str, Any]:
    """A nightly policy whose schedule is suspended unless ``suspend=False`` is given:
    a run the CronJob starts at 02:00 UTC in the middle of a test would be a second,
    newer backup than the one it made (a CI run at 02:00 met that). Tests of the
    schedule itself say so."""
    spec: dict[str, Any] = {
        "tenantRef": {"name": tenant.name},
        "schedule": "0 2 * * *",
        "suspend": True,
        "targets": ["Postgres", "Configuration"],
        "storage": {
            "bucket": bucket or tenant.bucket, "prefix": "backups", "endpoint": endpoint,
            "region": "us-east-1", "forcePathStyle": True,
            "credentialsSecretRef": {"name": credentials},
            "endpointCA": {"name": "s3-ca"},
        },
        "retention": {"keepLast": 5},
    }
    spec.update(overrides)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "BackupPolicy",
            "metadata": {"name": name, "namespace": tenant.namespace}, "spec": spec}


def apply(cluster: ClusterHandle, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump(manifest))


def custom(cluster: ClusterHandle, namespace: str, plural: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, plural, name)
    assert isinstance(found, dict)  # the client types a custom object as a bare object
    return found


def get_policy(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    return custom(cluster, namespace, "backuppolicies", name)


def get_drill(cluster: ClusterHandle, namespace: str, name: str) -> dict[str, Any]:
    return custom(cluster, namespace, "drdrills", name)


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found["type"] == type_:
            return dict(found)
    return {}


def explain(cluster: ClusterHandle, namespace: str) -> str:
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    logs = cluster.kubectl("logs", "-n", namespace, "-l", RUNNER_LABEL, "--tail=30",
                           check=False)
    return f"pods:\n{pods}\nrunner logs:\n{logs.stdout}{logs.stderr}"


def _terminated(pod: Any) -> Any:
    statuses = pod.status.container_statuses or []
    return statuses[0].state.terminated if statuses else None


def _pod_run(pod: Any) -> PodRun:
    container = pod.spec.containers[0]
    state = _terminated(pod)
    return PodRun(pod.metadata.namespace, pod.metadata.name,
                  [*(container.command or []), *(container.args or [])], state.exit_code,
                  state.message or "", state.started_at, state.finished_at)


def run_backup(cluster: ClusterHandle, namespace: str, policy: str, request: str,
               timeout: float = 180) -> PodRun:
    """Ask for an on-demand backup; wait for its pod (on the node) to terminate."""
    ask_backup(cluster, namespace, policy, request)
    return backup_ran(cluster, namespace, policy, request, timeout)


def ask_backup(cluster: ClusterHandle, namespace: str, policy: str, request: str) -> None:
    cluster.kubectl("annotate", "--overwrite", "-n", namespace, f"sfbp/{policy}",
                    f"stackforge.io/backup-now={request}")


def backup_ran(cluster: ClusterHandle, namespace: str, policy: str, request: str,
               timeout: float = 180) -> PodRun:
    """Wait for the pod of an on-demand backup asked before to terminate."""
    from stackforge_operator.builders.backup import manual_job_name

    core = client.CoreV1Api(cluster.api)
    selector = f"job-name={manual_job_name(policy, request)}"

    def finished() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return next((p for p in pods if _terminated(p) is not None), None)

    try:
        ran = _pod_run(eventually(finished, timeout=timeout, interval=0.5))
    except AssertionError as error:
        raise AssertionError(f"{error}\n{explain(cluster, namespace)}") from None
    if ran.returncode != 0:
        # Kept whether or not the test meant the run to fail: when it did not, what
        # the enforcer held at that moment is what explains it.
        record_dataplane(cluster, f"{namespace}-{ran.pod}")
    return ran


def backup_manifest(s3: S3Server, bucket: str, tenant: str, run_id: str) -> dict[str, Any]:
    """A backup run's manifest, as the runner stored it."""
    body = s3.client().get_object(Bucket=bucket, Key=f"backups/{tenant}/{run_id}/manifest.json")
    loaded: dict[str, Any] = json.loads(body["Body"].read())
    return loaded


def record_dataplane(cluster: ClusterHandle, label: str) -> Path | None:
    """Write the pods' addresses and the node's firewall rules and ipsets to a file
    in the run directory (root only), for a run that failed: returns its path."""
    if cluster.local is None or os.geteuid() != 0:
        return None
    pods = cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
    by_ip: dict[str, list[str]] = {}
    for line in pods.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 6 and fields[3] not in ("Completed", "Error") and fields[6] != "<none>":
            by_ip.setdefault(fields[6], []).append(f"{fields[0]}/{fields[1]}")
    shared = {ip: names for ip, names in by_ip.items() if len(names) > 1}
    rules = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True,
                           check=False).stdout
    sets = subprocess.run(["ipset", "save"], capture_output=True, text=True, check=False).stdout
    path = cluster.local.run_dir / f"dataplane-{label}-{int(time.time())}.txt"
    path.write_text(f"addresses held by more than one pod: {shared}\n\npods:\n{pods}\n"
                    f"iptables (filter):\n{rules}\nipsets:\n{sets}")
    return path


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- drills ---------------------------------------------------------------------------


def drill_manifest(name: str, tenant: Tenant, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenantRef": {"name": tenant.name},
        "backupPolicyRef": {"name": "nightly"},
        "once": True,
        "objectives": {"rtoSeconds": 600, "rpoSeconds": 3600},
        "checks": {"queries": [
            {"name": "customers", "sql": "SELECT count(*) FROM shop.customers",
             "expectedValue": str(stack.CUSTOMERS)},
            {"name": "no-orphans", "expectedRows": 0, "sql":
             "SELECT o.id FROM shop.orders o LEFT JOIN shop.customers c "
             "ON c.id = o.customer_id WHERE c.id IS NULL"},
        ]},
    }
    body.update(spec)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DRDrill",
            "metadata": {"name": name, "namespace": tenant.namespace}, "spec": body}


def sandbox_of(cluster: ClusterHandle, namespace: str, drill: str, *,
               exclude: str | None = None, timeout: float = 90) -> str:
    """The sandbox namespace of the drill's active run, once its restore Job exists."""
    def found() -> str | None:
        active = (get_drill(cluster, namespace, drill).get("status") or {}).get("activeRun")
        sandbox = active.get("sandboxNamespace") if active and active.get("jobName") else None
        return sandbox if sandbox != exclude else None

    sandbox: str = eventually(found, timeout=timeout, interval=0.2)
    return sandbox


def watch_drill_pod(cluster: ClusterHandle, sandbox: str, timeout: float = 180) -> PodRun:
    """Follow the sandbox's restore pod until it terminates (a watch sees that state
    even though the operator deletes the sandbox right after)."""
    core = client.CoreV1Api(cluster.api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_pod, sandbox,
                                   label_selector=f"{RUNNER_LABEL}=drill",
                                   timeout_seconds=max(1, int(deadline - time.monotonic()))):
            pod = event["object"]
            if _terminated(pod) is not None:
                stream.stop()
                return _pod_run(pod)
    raise AssertionError(f"no drill pod terminated in {sandbox} within {timeout}s")


def finished_drill(cluster: ClusterHandle, namespace: str, name: str,
                   timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        drill = get_drill(cluster, namespace, name)
        st = drill.get("status") or {}
        return drill if st.get("lastResult") and not st.get("activeRun") else None

    result: dict[str, Any] = eventually(done, timeout=timeout, interval=0.5)
    return result
