"""A tenant on the real node: PostgreSQL (and the test app, where a test needs an
app), seeded through `kubectl exec` as its application role."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes import client

from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import status_of

DATABASE = "shop"
CUSTOMERS = 500
ORDERS = 1200

# Owned by the application role, as an application would create them, so the
# backup (which connects as that role) can dump them.
SEED_SQL = f"""
CREATE SCHEMA shop AUTHORIZATION CURRENT_USER;
CREATE TABLE shop.customers (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.orders (id int PRIMARY KEY, customer_id int REFERENCES shop.customers,
                          total numeric(10, 2));
INSERT INTO shop.customers SELECT g, 'customer ' || g FROM generate_series(1, {CUSTOMERS}) g;
INSERT INTO shop.orders SELECT g, 1 + g % {CUSTOMERS}, g * 1.5
  FROM generate_series(1, {ORDERS}) g;
"""  # noqa: S608 - built from this module's constants, no input


# The seeded orders, as one value: equal before and after a fault, nothing lost.
ORDERS_CHECKSUM_SQL = ("SELECT count(*) || ':' || md5(string_agg(id::text || '/' || "
                       "total::text, ',' ORDER BY id)) FROM shop.orders")

# What a restore into a tenant must keep: who owns what, and who may do what with it.
OWNERSHIP_SQL = (
    "SELECT string_agg(format('%s|%s|%s', c.relname, pg_get_userbyid(c.relowner), "
    "coalesce(c.relacl::text, '')), ';' ORDER BY c.relname) FROM pg_class c "
    "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' "
    "AND c.relname IN ('journal', 'treasure')")


def postgres_only(name: str) -> dict[str, Any]:
    return tenants.small_tenant(name, components={
        "postgres": {"version": 15, "database": DATABASE, "storage": "1Gi"},
        "redis": {"enabled": False},
        # Kong is always part of a stack; at zero replicas it needs no image here.
        "kong": {"replicas": 0},
        "apps": [],
    })


def postgres_and_app(name: str, app_replicas: int = 1) -> dict[str, Any]:
    """:func:`postgres_only` with the test app as its app "api" (answering /healthz)."""
    manifest = postgres_only(name)
    manifest["spec"]["components"]["apps"] = [{
        "name": "api", "image": TESTAPP_IMAGE, "port": 8080, "healthCheckPath": "/healthz",
        "replicas": app_replicas, "env": {"PORT": "8080"}}]
    return manifest


def app_pods(cluster: ClusterHandle, namespace: str, app: str = "api") -> tuple[int, int]:
    """The app Deployment's (asked, ready) pods: the operator's part, then the cluster's."""
    deployment = client.AppsV1Api(cluster.api).read_namespaced_deployment(app, namespace)
    return int(deployment.spec.replicas or 0), int(status_of(deployment).ready_replicas or 0)


def wait_ready(cluster: ClusterHandle, name: str, timeout: float = 240) -> None:
    try:
        tenants.wait_condition(cluster, name, "Ready", "True", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"tenant {name} not Ready; "
                             f"{diagnosis(cluster, tenants.namespace_of(name))}") from None


def diagnosis(cluster: ClusterHandle, namespace: str, pods: str = "") -> str:
    """What a person would look at: pods, claims, recent events, and the pods described
    (``pods``: only these, space-separated)."""
    listing = cluster.kubectl("get", "pods,pvc", "-n", namespace, "-o", "wide",
                              check=False).stdout
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp",
                             check=False).stdout
    described = cluster.kubectl("describe", "pods", "-n", namespace, *pods.split(),
                                check=False).stdout
    # The database pods' own words (the archiver's pushes among them): once the
    # test is over its namespace, and these logs, are gone.
    databases = [name for name in cluster.kubectl(
        "get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split()
        if name.startswith("pod/postgres-")]
    logs = "".join(cluster.kubectl("logs", "-n", namespace, name, "--all-containers",
                                   "--prefix", "--tail=30", check=False).stdout
                   for name in databases)
    return (f"\n{listing}\nevents (last ones):\n{events[-3000:]}\n"
            f"database pods' logs (last lines):\n{logs[-6000:]}\n"
            f"described:\n{described[-4000:]}")


def psql(cluster: ClusterHandle, namespace: str, sql: str, *, as_app: bool = False,
         pod: str = "postgres-0") -> str:
    """Run SQL in the primary through `kubectl exec` (the superuser over the socket,
    or switched to the application role); ``pod``: the primary's pod (another after
    an in-place recovery)."""
    if as_app:
        owner = cluster.kubectl(
            "exec", "-n", namespace, pod, "-c", "postgres", "--", "psql", "-U",
            "postgres", "-h", "/var/run/postgresql", "-d", DATABASE, "-tAc",
            "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname = current_database()").stdout.strip()
        sql = f'SET ROLE "{owner}";\n{sql}'
    return cluster.kubectl(
        "exec", "-i", "-n", namespace, pod, "-c", "postgres", "--",
        "psql", "-U", "postgres", "-h", "/var/run/postgresql", "-d", DATABASE,
        "-v", "ON_ERROR_STOP=1", "-tA", input=sql).stdout.strip()


def postgres_credentials(cluster: ClusterHandle, namespace: str) -> dict[str, str]:
    """The tenant's PostgreSQL credentials Secret, decoded (throwaway passwords of a
    throwaway tenant)."""
    found = client.CoreV1Api(cluster.api).read_namespaced_secret(sn.POSTGRES_SECRET, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}
