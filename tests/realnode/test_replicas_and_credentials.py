"""Streaming replicas and credentials, on running pods, on one tenant with two
read replicas and a pooler (the tests run in order, each leaving it Ready):

- rows written on the primary reach both replicas, each streaming through its
  own slot, and their lag is in the tenant's status; a replica whose volume is
  lost is cloned again; a replica whose WAL the primary no longer has is
  proven unable to follow, cloned anew by itself, and the status says why;
- after a rotation request the new passwords log in and the old ones are
  refused, for the superuser, the application role, the replication role (the
  replicas reconnect and stream) and through PgBouncer; the application's
  connection through the pooler works after it;
- admin accounts log in with their role's privileges (Admin writes and
  creates, Viewer only reads), and a removed account can no longer log in;
- isolation refuses every flow of the stack (by Service address, and DNS) but
  the operator's, without making a replica throw its copy away; lifting it
  restores them;
- replicas scaled away leave no slot behind.

The client is a pod labelled as the tenant's app ``client`` (declared with
zero replicas), so the tenant's own NetworkPolicies let it reach PostgreSQL,
the read replicas and the pooler, as the application would.
"""

from __future__ import annotations

import base64
import functools
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.builders import pooler
from stackforge_operator.builders import secrets_names as sn
from stackforge_operator.builders.common import (
    APP_COMPONENT,
    APP_LABEL,
    COMPONENT_LABEL,
    POOLER_PORT,
    TENANT_LABEL,
)
from stackforge_operator.builders.credentials import ROTATE_ANNOTATION
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.models.tenant import admin_secret_name
from tests.realnode import pods, stack
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import spec_of, status_of, uid_of

CLIENT = "client"


def replicated_tenant(name: str) -> dict[str, Any]:
    manifest = stack.postgres_only(name)
    components = manifest["spec"]["components"]
    components["postgres"].update({"readReplicas": 2, "pooler": {"enabled": True, "replicas": 1}})
    components["apps"] = [{"name": CLIENT, "image": pods.POSTGRES_IMAGE, "port": 8080,
                           "replicas": 0}]
    manifest["spec"]["adminAccounts"] = [
        {"username": "alice", "email": "alice@example.com", "role": "Admin"},
        {"username": "vic_viewer", "email": "vic@example.com", "role": "Viewer"}]
    return manifest


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    name = f"cred-{uuid.uuid4().hex[:5]}"
    tenants.apply(real_cluster, replicated_tenant(name))
    ns = tenants.namespace_of(name)
    pods.apply(real_cluster, pods.postgres_pod(CLIENT, ns, {
        APP_LABEL: CLIENT, COMPONENT_LABEL: APP_COMPONENT, TENANT_LABEL: name}))
    stack.wait_ready(real_cluster, name, timeout=300)
    pods.wait_ready(real_cluster, ns, CLIENT)
    yield name
    tenants.discard(real_cluster, name)


def connect(cluster: ClusterHandle, namespace: str, conninfo: str,
            sql: str) -> subprocess.CompletedProcess[str]:
    """psql from the client pod. The conninfo, password included, is an argument:
    the test's passwords are throwaway ones of a throwaway tenant."""
    return cluster.kubectl(
        "exec", "-n", namespace, CLIENT, "--", "psql", "-X", "-tA", "-v", "ON_ERROR_STOP=1",
        conninfo, "-c", sql, check=False, timeout=60)


def logs_in(cluster: ClusterHandle, namespace: str, conninfo: str, sql: str = "SELECT 1") -> bool:
    result = connect(cluster, namespace, conninfo, sql)
    if result.returncode == 0:
        return True
    # PostgreSQL's words, or PgBouncer's.
    assert ("password authentication failed" in result.stderr
            or "SASL authentication failed" in result.stderr), result.stderr
    return False


def wait_for_login(cluster: ClusterHandle, namespace: str, conninfo: str, sql: str) -> None:
    """Until the login works; meanwhile the server may be restarting (refused
    connections) or still have the old password."""
    tenants.eventually(lambda: connect(cluster, namespace, conninfo, sql).returncode == 0,
                       timeout=240, interval=2)


def logins(credentials: dict[str, str], database: str) -> dict[str, tuple[str, str]]:
    """Who logs in where, as (conninfo, a statement that role may run)."""
    app = credentials[sn.POSTGRES_USER_KEY]
    return {
        "superuser": (f"host=postgres user=postgres dbname=postgres "
                      f"password={credentials[sn.POSTGRES_SUPERUSER_PASSWORD_KEY]}", "SELECT 1"),
        "app": (f"host=postgres user={app} dbname={database} "
                f"password={credentials[sn.POSTGRES_PASSWORD_KEY]}", "SELECT 1"),
        # A replication connection, as the replica's walreceiver makes.
        "replication": (f"host=postgres user=replicator replication=database dbname=postgres "
                        f"password={credentials[sn.POSTGRES_REPLICATION_PASSWORD_KEY]}",
                        "IDENTIFY_SYSTEM"),
        "pooler": (f"host=pooler port={POOLER_PORT} user={app} dbname={database} "
                   f"password={credentials[sn.POSTGRES_PASSWORD_KEY]}", "SELECT 1"),
    }


STREAMING = "postgres-replica-0:streaming,postgres-replica-1:streaming"
# Which replica streams through which slot, as the primary sees it.
SLOTS_SQL = ("SELECT coalesce(string_agg(s.slot_name || ':' || coalesce(r.application_name, "
             "'unused'), ',' ORDER BY s.slot_name), '') FROM pg_replication_slots s "
             "LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid")


def streaming_replicas(cluster: ClusterHandle, namespace: str) -> str:
    return stack.psql(cluster, namespace,
                      "SELECT coalesce(string_agg(application_name || ':' || state, ',' "
                      "ORDER BY application_name), '') FROM pg_stat_replication")


def psql_in(cluster: ClusterHandle, namespace: str, pod: str,
            sql: str) -> subprocess.CompletedProcess[str]:
    """SQL in a pod's own server (the superuser by peer on its socket); not checked."""
    return cluster.kubectl(
        "exec", "-n", namespace, pod, "-c", "postgres", "--", "psql", "-X", "-tA",
        "-U", "postgres", "-h", "/var/run/postgresql", "-d", stack.DATABASE, "-c", sql,
        check=False, timeout=60)


def on_replica(cluster: ClusterHandle, namespace: str, pod: str, sql: str) -> str:
    """What SQL in a replica's own server prints."""
    return psql_in(cluster, namespace, pod, sql).stdout.strip()


def replication_status(cluster: ClusterHandle, tenant: str) -> list[tuple[str, Any, bool]]:
    """(replica, streaming, whether its lag in bytes and seconds is known) from the status."""
    found = tenants.get(cluster, tenant) or {}
    return [(r["name"], r.get("streaming"),
             isinstance(r.get("lagBytes"), int) and isinstance(r.get("lagSeconds"), (int, float)))
            for r in (found.get("status") or {}).get("replication") or []]


def wait_for_replication_status(cluster: ClusterHandle, tenant: str,
                                expected: list[tuple[str, Any, bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (found := replication_status(cluster, tenant)) != expected:
        assert time.monotonic() < deadline, f"replication status {found}, not {expected}"
        time.sleep(2)


def test_rows_reach_both_replicas_each_through_its_own_slot(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    tenants.eventually(lambda: streaming_replicas(real_cluster, ns) == STREAMING,
                       timeout=120, interval=2)
    assert stack.psql(real_cluster, ns, SLOTS_SQL) == (
        "postgres_replica_0:postgres-replica-0,postgres_replica_1:postgres-replica-1")
    # The slots may hold back a fifth of the primary's 1Gi volume, no more.
    tenants.eventually(lambda: stack.psql(real_cluster, ns, "SHOW max_slot_wal_keep_size")
                       == "204MB", timeout=60, interval=2)
    # The lag the replication alert reads, per replica, from the primary's exporter
    # (fetched with the image's Perl: there is no HTTP client in it otherwise).
    metrics = real_cluster.kubectl(
        "exec", "-n", ns, "postgres-0", "-c", "postgres", "--", "perl", "-MHTTP::Tiny", "-e",
        'print HTTP::Tiny->new->get("http://127.0.0.1:9187/metrics")->{content}').stdout
    for metric in ("stackforge_replication_lag_bytes", "stackforge_replication_lag_seconds"):
        lag_lines = [line for line in metrics.splitlines() if line.startswith(f"{metric}{{")]
        replicas = sorted(re.search(r'replica="([^"]+)"', line).group(1)  # type: ignore[union-attr]
                          for line in lag_lines)
        assert replicas == ["postgres-replica-0", "postgres-replica-1"], metrics
    # The operator reads the same into the tenant's status.
    wait_for_replication_status(real_cluster, tenant, [
        ("postgres-replica-0", True, True), ("postgres-replica-1", True, True)], timeout=60)
    stack.psql(real_cluster, ns, "CREATE TABLE shipped AS SELECT generate_series(1, 300) AS n",
               as_app=True)
    for pod in ("postgres-replica-0", "postgres-replica-1"):
        def shipped(p: str = pod) -> bool:
            return on_replica(real_cluster, ns, p, "SELECT count(*) FROM shipped") == "300"

        tenants.eventually(shipped, timeout=60, interval=1)
        # A replica is a standby: it refuses writes.
        refused = psql_in(real_cluster, ns, pod, "INSERT INTO shipped VALUES (0)")
        assert "read-only transaction" in refused.stderr


def test_a_replica_whose_volume_is_lost_is_cloned_again(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    core = client.CoreV1Api(real_cluster.api)
    claim = "data-postgres-replica-1"
    old_claim = uid_of(core.read_namespaced_persistent_volume_claim(claim, ns))
    stack.psql(real_cluster, ns, "CREATE TABLE after_loss AS SELECT 7 AS n", as_app=True)
    # The claim goes once no pod uses it: delete it, then the pod.
    real_cluster.kubectl("delete", "pvc", "-n", ns, claim, "--wait=false")
    real_cluster.kubectl("delete", "pod", "-n", ns, "postgres-replica-1", "--wait=true")

    def cloned_again() -> bool:
        try:
            fresh = core.read_namespaced_persistent_volume_claim(claim, ns)
            pod = core.read_namespaced_pod("postgres-replica-1", ns)
        except client.ApiException:
            return False
        return bool(uid_of(fresh) != old_claim and pods.is_ready(pod))

    try:
        tenants.eventually(cloned_again, timeout=180, interval=2)
    except AssertionError:
        raise AssertionError("postgres-replica-1 was not cloned again: "
                             + stack.diagnosis(real_cluster, ns, "postgres-replica-1")) from None
    log = real_cluster.kubectl("logs", "-n", ns, "postgres-replica-1", "-c", "postgres").stdout
    assert "cloning postgres:5432" in log and "clone complete" in log
    assert on_replica(real_cluster, ns, "postgres-replica-1",
                      "SELECT n FROM after_loss") == "7"
    tenants.eventually(lambda: streaming_replicas(real_cluster, ns) == STREAMING,
                       timeout=60, interval=2)


def test_a_replica_whose_wal_is_gone_is_cloned_anew_and_the_status_says_why(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    core = client.CoreV1Api(real_cluster.api)
    restarts_before = {pod: pod_restarts(core, ns, pod)
                       for pod in ("postgres-replica-0", "postgres-replica-1")}
    # Replica 1 is cut off (replica 0 keeps its connection) and the WAL it
    # would need is written past; its slot is dropped once a checkpoint is past
    # that WAL (the primary's upkeep makes the slot anew, and a new physical
    # slot keeps WAL from the last checkpoint on), and the WAL is recycled.
    def sql(statement: str, *, as_app: bool = False) -> str:
        return stack.psql(real_cluster, ns, statement, as_app=as_app)

    def write_and_switch(rows: int) -> None:
        sql(f"INSERT INTO while_away SELECT generate_series(1, {rows})", as_app=True)
        sql("SELECT pg_switch_wal()")

    sql("CREATE TABLE while_away (n int)", as_app=True)
    sql("ALTER ROLE replicator NOLOGIN")
    try:
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication "
            "WHERE application_name = 'postgres-replica-1'")
        tenants.eventually(lambda: sql("SELECT count(*) FROM pg_replication_slots WHERE "
                                       "slot_name = 'postgres_replica_1' AND NOT active") == "1",
                           timeout=30)
        write_and_switch(10000)
        sql("CHECKPOINT")
        sql("SELECT pg_drop_replication_slot('postgres_replica_1')")
        tenants.eventually(lambda: sql("SELECT count(*) FROM pg_replication_slots "
                                       "WHERE slot_name = 'postgres_replica_1'") == "1",
                           timeout=30)
        write_and_switch(10000)
        write_and_switch(10000)
        sql("CHECKPOINT")
    finally:
        sql("ALTER ROLE replicator LOGIN")

    def reclone_reason() -> str | None:
        for replica in (tenants.get(real_cluster, tenant) or {}).get("status", {}).get(
                "replication") or []:
            if replica["name"] == "postgres-replica-1":
                reason: str | None = replica.get("lastRecloneReason")
                return reason
        return None

    try:
        reason = tenants.eventually(reclone_reason, timeout=240, interval=3)
    except AssertionError:
        raise AssertionError("postgres-replica-1 was not cloned anew: "
                             + stack.diagnosis(real_cluster, ns, "postgres-replica-1")) from None
    assert "slot postgres_replica_1 keeps WAL from" in reason
    assert pod_restarts(core, ns, "postgres-replica-1") > restarts_before["postgres-replica-1"]
    tenants.eventually(lambda: streaming_replicas(real_cluster, ns) == STREAMING,
                       timeout=180, interval=2)
    log = real_cluster.kubectl("logs", "-n", ns, "postgres-replica-1", "-c", "postgres").stdout
    assert "re-cloning: slot postgres_replica_1 keeps WAL from" in log
    assert on_replica(real_cluster, ns, "postgres-replica-1",
                      "SELECT count(*) FROM while_away") == "30000"
    # Replica 0 was never in doubt.
    assert pod_restarts(core, ns, "postgres-replica-0") == restarts_before["postgres-replica-0"]
    stack.wait_ready(real_cluster, tenant, timeout=120)


def pod_restarts(core: client.CoreV1Api, namespace: str, pod: str) -> int:
    found = core.read_namespaced_pod(pod, namespace)
    return sum(c.restart_count for c in (status_of(found).container_statuses or []))


def test_rotation_changes_every_password_in_the_database_and_the_pooler(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    old = stack.postgres_credentials(real_cluster, ns)
    before = logins(old, stack.DATABASE)
    for role, (conninfo, sql) in before.items():
        assert logs_in(real_cluster, ns, conninfo, sql), role
    assert streaming_replicas(real_cluster, ns) == STREAMING

    real_cluster.kubectl("annotate", "stackforgetenant", "-n", ns, tenant,
                         f"{ROTATE_ANNOTATION}=r1", "--overwrite")
    new = tenants.eventually(
        lambda: (s := stack.postgres_credentials(real_cluster, ns))[sn.POSTGRES_PASSWORD_KEY]
        != old[sn.POSTGRES_PASSWORD_KEY] and s, timeout=60)
    assert new[sn.POSTGRES_USER_KEY] == old[sn.POSTGRES_USER_KEY]
    for key in (sn.POSTGRES_PASSWORD_KEY, sn.POSTGRES_SUPERUSER_PASSWORD_KEY,
                sn.POSTGRES_REPLICATION_PASSWORD_KEY):
        assert new[key] != old[key], key
    after = logins(new, stack.DATABASE)

    # The pods restart with the new Secret; the database and the pooler then
    # take the new passwords (each within the rollout) ...
    for conninfo, sql in after.values():
        wait_for_login(real_cluster, ns, conninfo, sql)
    stack.wait_ready(real_cluster, tenant, timeout=240)
    # ... and refuse the old ones.
    for role, (conninfo, sql) in before.items():
        assert not logs_in(real_cluster, ns, conninfo, sql), f"{role}: old password accepted"

    # The replicas reconnected with the new replication password and stream.
    tenants.eventually(lambda: streaming_replicas(real_cluster, ns) == STREAMING,
                       timeout=120, interval=2)
    app_conninfo, _ = after["app"]
    written = connect(real_cluster, ns, app_conninfo,
                      "CREATE TABLE rotated AS SELECT 42 AS answer")
    assert written.returncode == 0, written.stderr
    read_only = app_conninfo.replace("host=postgres ", "host=postgres-read ")
    tenants.eventually(lambda: connect(real_cluster, ns, read_only,
                                       "SELECT answer FROM rotated").stdout.strip() == "42",
                       timeout=60, interval=1)
    # The application's connection through the pooler works after the rotation.
    pooled, _ = after["pooler"]
    through_pooler = connect(real_cluster, ns, pooled, "SELECT answer FROM rotated")
    assert through_pooler.stdout.strip() == "42", through_pooler.stderr


def test_admin_accounts_log_in_with_their_roles_privileges_until_removed(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    core = client.CoreV1Api(real_cluster.api)

    def login(account: str) -> str:
        data = core.read_namespaced_secret(admin_secret_name(account), ns).data
        assert data is not None
        password = base64.b64decode(data[sn.ADMIN_PASSWORD_KEY]).decode()
        return f"host=postgres user={account} dbname={stack.DATABASE} password={password}"

    alice, vic = login("alice"), login("vic_viewer")
    # The primary's sidecar applies the accounts within a pass or two.
    tenants.eventually(lambda: connect(real_cluster, ns, vic, "SELECT 1").returncode == 0,
                       timeout=120, interval=2)
    created = connect(real_cluster, ns, alice,
                      "CREATE TABLE audit (n int); INSERT INTO audit VALUES (1); "
                      "INSERT INTO shipped VALUES (301)")
    assert created.returncode == 0, created.stderr
    assert connect(real_cluster, ns, vic, "SELECT count(*) FROM audit").stdout.strip() \
        == "1"
    refused = connect(real_cluster, ns, vic, "INSERT INTO audit VALUES (2)")
    assert "permission denied" in refused.stderr

    manifest = replicated_tenant(tenant)
    manifest["spec"]["adminAccounts"] = manifest["spec"]["adminAccounts"][:1]
    tenants.apply(real_cluster, manifest)

    def vic_refused() -> bool:
        return "not permitted to log in" in connect(real_cluster, ns, vic, "SELECT 1").stderr

    # The operator touches the pod, so the kubelet writes the Secret's file at
    # once (not up to a minute later); then the sidecar's next pass (10 s).
    tenants.eventually(vic_refused, timeout=60, interval=3)
    assert connect(real_cluster, ns, alice, "SELECT count(*) FROM audit").returncode == 0
    log = real_cluster.kubectl("logs", "-n", ns, "postgres-0", "-c", "upkeep").stdout
    assert "admin account vic_viewer removed" in log


def test_isolation_refuses_every_flow_but_the_operators_and_lifting_it_restores_them(
        real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    core = client.CoreV1Api(real_cluster.api)
    credentials = stack.postgres_credentials(real_cluster, ns)
    app, password = credentials[sn.POSTGRES_USER_KEY], credentials[sn.POSTGRES_PASSWORD_KEY]

    def address(service: str) -> str:
        return str(spec_of(core.read_namespaced_service(service, ns)).cluster_ip)

    # By Service address, so that a refusal is the connection's, not DNS's.
    flows = {service: (f"host={address(service)} port={port} user={app} "
                       f"dbname={stack.DATABASE} password={password} connect_timeout=3")
             for service, port in (("postgres", 5432), ("postgres-read", 5432),
                                   ("pooler", POOLER_PORT))}

    def works(conninfo: str) -> bool:
        return connect(real_cluster, ns, conninfo, "SELECT 1").returncode == 0

    def resolves() -> bool:
        return pods.exec_in(real_cluster, ns, CLIENT, "getent", "hosts", "postgres",
                            check=False).returncode == 0

    for service, conninfo in flows.items():
        assert works(conninfo), service
    assert resolves()
    replicas = ("postgres-replica-0", "postgres-replica-1")
    replica_uids = {pod: uid_of(core.read_namespaced_pod(pod, ns)) for pod in replicas}

    # Sessions open before the isolation, as an attacker's would be: the
    # dataplane lets open connections go on, so the primary's sidecar closes
    # the one on the primary, and the replicas' pods are replaced (no sidecar
    # runs there) for the one on a replica.
    def hold(service: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*real_cluster.kubectl_argv, f"--kubeconfig={real_cluster.kubeconfig}",
             "exec", "-n", ns, CLIENT, "--", "psql", "-X",
             flows[service], "-c", "SELECT pg_sleep(600)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def sleeping(pod: str) -> int:
        answer = psql_in(real_cluster, ns, pod, "SELECT count(*) FROM pg_stat_activity "
                         "WHERE query LIKE 'SELECT pg_sleep(600)%'").stdout.strip()
        return int(answer or "0")

    held_open = {"postgres": hold("postgres"), "postgres-read": hold("postgres-read")}
    try:
        tenants.eventually(lambda: sleeping("postgres-0") == 1
                           and sum(sleeping(pod) for pod in replicas) == 1, timeout=30)
        isolated = replicated_tenant(tenant)
        isolated["spec"]["adminAccounts"] = isolated["spec"]["adminAccounts"][:1]
        isolated["spec"]["isolate"] = True
        tenants.apply(real_cluster, isolated)
        cut_at = time.monotonic()
        tenants.eventually(lambda: not works(flows["postgres"]), timeout=60, interval=2)
        assert not resolves()
        # The operator touches the primary's pod, so the kubelet writes the
        # sidecar's file at once (not up to a minute later); then its next pass
        # (10 s). A replica's session ends with its pod.
        for service, session in held_open.items():
            try:
                session.wait(timeout=60)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a session held open through {service} outlived "
                                     "60 s of isolation") from None
            stderr = session.stderr.read() if session.stderr else ""
            assert "terminating connection" in stderr, (service, stderr)
    finally:
        for session in held_open.values():
            if session.poll() is None:
                session.kill()
            session.wait()
    log = real_cluster.kubectl("logs", "-n", ns, "postgres-0", "-c", "upkeep").stdout
    assert "isolated: closed" in log
    # New connections refused by the policies: a psql that fails proves little
    # (the replicas are not Ready while isolated, so their Service has no
    # endpoint), so a probe carrying the app's labels is refused each of the
    # primary, the pooler and a replica while the operator's stand-in reaches it.
    _refused_while_isolated(real_cluster, ns, tenant, {
        "postgres": f"{address('postgres')}:5432",
        "pooler": f"{address('pooler')}:{POOLER_PORT}",
        "postgres-replica-0": f"{_running_pod_ip(core, ns, 'postgres-replica-0')}:5432"})
    # The replicas' connections were closed too and cannot come back; the
    # operator still reads the primary's exporter (its own flow) and says so.
    wait_for_replication_status(real_cluster, tenant, [
        ("postgres-replica-0", False, False), ("postgres-replica-1", False, False)], timeout=60)
    # Held past the replicas' liveness proof window (three stalled probes and
    # two failures, 10 s apart): a primary they cannot reach is no proof, so
    # isolation never has a replica throw its copy away.
    time.sleep(max(0.0, 60 - (time.monotonic() - cut_at)))

    lifted = replicated_tenant(tenant)
    lifted["spec"]["adminAccounts"] = lifted["spec"]["adminAccounts"][:1]
    tenants.apply(real_cluster, lifted)
    # Reported lifted: a session begun now is never taken for one of the
    # isolation's, however late the kubelet refreshes the sidecar's file.
    tenants.wait_condition(real_cluster, tenant, "Isolated", "False", timeout=60)
    tenants.eventually(lambda: all(works(c) for c in flows.values()), timeout=120, interval=2)
    assert resolves()
    after_lift = hold("postgres")
    held_since = time.monotonic()
    try:
        tenants.eventually(lambda: streaming_replicas(real_cluster, ns) == STREAMING,
                           timeout=120, interval=2)
        # Held through three of the sidecar's passes (10 s apart).
        time.sleep(max(0.0, 30 - (time.monotonic() - held_since)))
        assert after_lift.poll() is None, after_lift.stderr.read() if after_lift.stderr else ""
        assert sleeping("postgres-0") == 1
    finally:
        after_lift.kill()
        after_lift.wait()
        psql_in(real_cluster, ns, "postgres-0", "SELECT count(pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%'")
    # Each replica was replaced once, by a pod that started from its volume and
    # was never restarted: the copy was kept, never cloned anew.
    for pod in replicas:
        replacement = core.read_namespaced_pod(pod, ns)
        assert uid_of(replacement) != replica_uids[pod], f"{pod} was not replaced"
        assert pod_restarts(core, ns, pod) == 0, pod
        started = real_cluster.kubectl("logs", "-n", ns, pod, "-c", "postgres").stdout
        assert "cloning" not in started, (pod, started)
    stack.wait_ready(real_cluster, tenant, timeout=120)


def _running_pod_ip(core: client.CoreV1Api, namespace: str, pod: str) -> str:
    """The pod's address once it runs (a replica replaced by the isolation is not
    Ready: it cannot stream, but its server listens)."""
    def address() -> str | None:
        found = status_of(core.read_namespaced_pod(pod, namespace))
        return str(found.pod_ip) if found.phase == "Running" and found.pod_ip else None
    found: str = tenants.eventually(address, timeout=120, interval=1)
    return found


def _refused_while_isolated(cluster: ClusterHandle, namespace: str, tenant: str,
                            targets: dict[str, str]) -> None:
    """A probe made now (after the isolation began, so it is not replaced) that
    the policies take for the app ``client`` is refused each target, which the
    operator's stand-in reaches."""
    probe = "client-probe"
    pods.apply(cluster, pods.probe_config_map(namespace),
               pods.probe_pod(probe, namespace, pods.app_labels(tenant, CLIENT)))
    try:
        pods.wait_ready(cluster, namespace, probe)
        with pods.operator_stand_in(cluster, "isolation-control") as control:
            for what, target in targets.items():
                try:
                    tenants.eventually(functools.partial(
                        pods.refused_but_reached_by, cluster, namespace, probe, target, control),
                        timeout=90, interval=1)
                except AssertionError:
                    raise AssertionError(f"{what} ({target}) not refused to the app while "
                                         "reached by the operator's stand-in") from None
    finally:
        cluster.kubectl("delete", "pod", probe, "-n", namespace, "--wait=false",
                        "--ignore-not-found", check=False)


def test_replicas_scaled_away_leave_no_slot(real_cluster: ClusterHandle, tenant: str) -> None:
    ns = tenants.namespace_of(tenant)
    manifest = replicated_tenant(tenant)
    manifest["spec"]["components"]["postgres"]["readReplicas"] = 0
    manifest["spec"]["adminAccounts"] = manifest["spec"]["adminAccounts"][:1]
    tenants.apply(real_cluster, manifest)
    # The primary's sidecar sees the shorter list once the kubelet writes the
    # ConfigMap's file (at once: the operator touches the pod) and the
    # replicas' pods are gone (a slot is dropped unused at two passes, 10 s apart).
    tenants.eventually(lambda: stack.psql(real_cluster, ns, SLOTS_SQL) == "",
                       timeout=90, interval=3)
    log = real_cluster.kubectl("logs", "-n", ns, "postgres-0", "-c", "upkeep").stdout
    assert "replication slot postgres_replica_1 dropped" in log
    stack.wait_ready(real_cluster, tenant)


def _two_poolers(real_cluster: ClusterHandle, tenant: str, **pooler_spec: int) -> str:
    """The tenant with two poolers rolled out and Ready, no replica; its namespace."""
    ns = tenants.namespace_of(tenant)
    manifest = replicated_tenant(tenant)
    manifest["spec"]["components"]["postgres"].update(
        {"readReplicas": 0, "pooler": {"enabled": True, "replicas": 2, **pooler_spec}})
    manifest["spec"]["adminAccounts"] = manifest["spec"]["adminAccounts"][:1]
    tenants.apply(real_cluster, manifest)
    apps = client.AppsV1Api(real_cluster.api)
    tenants.eventually(
        lambda: spec_of(apps.read_namespaced_deployment("pooler", ns)).replicas == 2, timeout=60)
    real_cluster.kubectl("rollout", "status", "-n", ns, "deployment/pooler", "--timeout=180s",
                         timeout=200)
    stack.wait_ready(real_cluster, tenant)
    return ns


def test_every_pooler_together_stays_within_the_primarys_connections(
        real_cluster: ClusterHandle, tenant: str) -> None:
    """Two poolers of 100 server connections each (Enterprise's defaults) and 100
    clients at once: PgBouncer queues what the primary cannot take rather than
    opening 200 connections to a server that admits 100, so every client's
    statement runs and the primary's connections stay within the pooled share."""
    ns = _two_poolers(real_cluster, tenant, defaultPoolSize=100)
    # The share assumes the image's max_connections; the image keeps initdb's.
    assert stack.psql(real_cluster, ns, "SHOW max_connections") == str(
        pooler.POSTGRES_MAX_CONNECTIONS)

    credentials = stack.postgres_credentials(real_cluster, ns)
    app = credentials[sn.POSTGRES_USER_KEY]
    clients = 100
    # Each client's transaction holds a server connection for 3 s.
    bench = ["exec", "-i", "-n", ns, CLIENT, "--", "env", "PGHOST=pooler",
             f"PGPORT={POOLER_PORT}", f"PGUSER={app}", f"PGDATABASE={stack.DATABASE}",
             f"PGPASSWORD={credentials[sn.POSTGRES_PASSWORD_KEY]}",
             "pgbench", "-n", f"--client={clients}", "--jobs=2", "--transactions=1",
             "--file=/dev/stdin"]
    # The role's name is the operator's own (letters and digits).
    count_app_sessions = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{app}'"  # noqa: S608
    peak = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(real_cluster.kubectl, *bench, input="SELECT pg_sleep(3);\n",
                              check=False, timeout=180)
        while not running.done():
            peak = max(peak, int(stack.psql(real_cluster, ns, count_app_sessions)))
            time.sleep(0.3)
        result = running.result()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"number of transactions actually processed: {clients}/{clients}" in result.stdout, \
        result.stdout
    share = pooler.POOLED_CONNECTIONS
    # The poolers were busy (the clients outnumber their connections) ...
    assert peak >= 2 * (share // 3) - 2, peak
    # ... and took no more than their share.
    assert peak <= share, peak


def test_new_connections_through_a_rolling_pooler_are_all_served(
        real_cluster: ClusterHandle, tenant: str) -> None:
    """A pooler pod being replaced stopped at once while kube-proxy still sent it
    new connections for a moment: refused ("Connection refused" at the Service's
    address, seen by a pgbench run started right after a rollout). Each pod now
    serves until the Service has forgotten it."""
    ns = _two_poolers(real_cluster, tenant)
    credentials = stack.postgres_credentials(real_cluster, ns)
    # A new connection for every transaction, 20 a second, through the rollout.
    bench = ["exec", "-i", "-n", ns, CLIENT, "--", "env", "PGHOST=pooler",
             f"PGPORT={POOLER_PORT}", f"PGUSER={credentials[sn.POSTGRES_USER_KEY]}",
             f"PGDATABASE={stack.DATABASE}",
             f"PGPASSWORD={credentials[sn.POSTGRES_PASSWORD_KEY]}",
             "pgbench", "-n", "--connect", "--client=4", "--rate=20", "--time=40",
             "--file=/dev/stdin"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(real_cluster.kubectl, *bench, input="SELECT 1;\n",
                              check=False, timeout=120)
        time.sleep(3)
        real_cluster.kubectl("rollout", "restart", "-n", ns, "deployment/pooler")
        real_cluster.kubectl("rollout", "status", "-n", ns, "deployment/pooler",
                             "--timeout=90s", timeout=100)
        result = running.result()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aborted" not in result.stdout + result.stderr, result.stdout + result.stderr
    processed = re.search(r"number of transactions actually processed: (\d+)", result.stdout)
    assert processed is not None and int(processed.group(1)) >= 600, result.stdout
