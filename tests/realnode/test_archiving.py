"""Continuous WAL archiving on running pods: a BackupPolicy with continuousArchiving
makes the tenant's primary archive every WAL segment through pgBackRest into the
tests' S3 server over TLS, under the path of the database's incarnation,
encrypted by pgBackRest; a committed row's segment is in the bucket within the
archive_timeout (measured), and the policy reports it (ContinuousArchiving).
When S3 cannot be reached the condition turns False (and the tenant's
BackupHealthy with it); when it can again, the queued segments follow, with no
gap in the archive.

The operator runs on the host here, so the name pods reach S3 by is mapped to
its Service's cluster IP for it (cluster_names/sitecustomize.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stackforge_operator import API_GROUP, API_VERSION
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from stackforge_operator.devcluster.node.storage import STORAGE_CLASS
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.reconcile import recovery
from tests.realnode import pods, runs, stack
from tests.realnode.operators import operator_running
from tests.realnode.s3_service import S3_NAMESPACE, S3_SERVICE, S3_SERVICE_NAME, s3_service
from tests.support import operator_identity, tenants
from tests.support.channels import Channels
from tests.support.clusters import ClusterHandle
from tests.support.objects import metadata_of, name_of, spec_of, status_of, uid_of
from tests.support.receiver import Receiver
from tests.support.s3_fault_proxy import S3FaultProxy
from tests.support.s3_server import S3Server

ARCHIVE_TIMEOUT_SECONDS = 60
# The segment reaches the bucket through pgBackRest's background push and a
# listing every second: a few seconds beyond the timeout.
PUSH_MARGIN_SECONDS = 15
# The operator's margin beyond the timeout before ContinuousArchiving turns False.
ARCHIVE_MARGIN_SECONDS = 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CIPHER_SECRET = "archive-cipher"


@pytest.fixture(scope="module")
def real_operator(real_operator_identity: operator_identity.OperatorIdentity,
                  tmp_path_factory: pytest.TempPathFactory, real_cluster: ClusterHandle,
                  pod_s3: S3Server) -> Iterator[OperatorProcess]:
    """The operator, resolving the S3 Service's name as it would in a pod."""
    service = client.CoreV1Api(real_cluster.api).read_namespaced_service(S3_SERVICE, S3_NAMESPACE)
    path = os.pathsep.join(p for p in (str(Path(__file__).parent / "cluster_names"),
                                       os.environ.get("PYTHONPATH", "")) if p)
    with operator_running(
            real_operator_identity, tmp_path_factory, PYTHONPATH=path,
            STACKFORGE_TEST_SERVICE_ADDRESSES=f"{S3_SERVICE_NAME}={spec_of(service).cluster_ip}",
            # An outage shows 40 s sooner than with the default 60 s margin.
            STACKFORGE_ARCHIVE_MARGIN_SECONDS=str(ARCHIVE_MARGIN_SECONDS),
    ) as process:
        yield process


@pytest.fixture(scope="module")
def archived_tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess,
                    pod_s3: S3Server) -> Iterator[tuple[str, str, str]]:
    """(tenant, bucket, cipher passphrase): a Ready tenant whose policy archives."""
    name = f"wal-{uuid.uuid4().hex[:5]}"
    # The policy first, as a platform engineer would: the primary then archives
    # from its first start, with no restart to take archive_mode.
    bucket = pod_s3.create_bucket()
    passphrase = _archiving_policy(real_cluster, pod_s3, name, bucket)
    tenants.apply(real_cluster, stack.postgres_only(name))
    stack.wait_ready(real_cluster, name)
    yield name, bucket, passphrase
    tenants.discard(real_cluster, name)


def _archiving_policy(cluster: ClusterHandle, s3: S3Server, name: str, bucket: str) -> str:
    """Tenant ``name``'s namespace and BackupPolicy "archive" that archives into
    ``bucket``; returns the repository's passphrase."""
    ns = tenants.namespace_of(name)
    tenants.ensure_namespace(cluster, ns)
    runs.put_s3_secrets(cluster, ns, s3)
    passphrase = secrets.token_urlsafe(32)
    tenants.put_secret(cluster, ns, CIPHER_SECRET, {"passphrase": passphrase})
    runs.apply(cluster, {
        "apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "BackupPolicy",
        "metadata": {"name": "archive", "namespace": ns},
        "spec": {
            "tenantRef": {"name": name},
            "targets": ["Postgres"],
            "storage": {"bucket": bucket, "prefix": "backups",
                        "endpoint": f"https://{S3_SERVICE_NAME}",
                        "region": "us-east-1", "forcePathStyle": True,
                        "credentialsSecretRef": {"name": "s3-credentials"},
                        "endpointCA": {"name": "s3-ca"}},
            "retention": {"keepLast": 3},
            "continuousArchiving": {
                "archiveTimeoutSeconds": ARCHIVE_TIMEOUT_SECONDS,
                "repositoryCipherSecretRef": {"name": CIPHER_SECRET, "key": "passphrase"}},
        },
    })
    return passphrase


def _archiving(cluster: ClusterHandle, namespace: str) -> dict[str, Any] | None:
    policy = runs.get_policy(cluster, namespace, "archive")
    found = runs.condition_of(policy, "ContinuousArchiving") if policy.get("status") else {}
    return policy if found.get("status") == "True" else None


def _segments(s3: S3Server, bucket: str, prefix: str) -> dict[str, str]:
    """WAL segment name -> object key, of every segment archived under ``prefix``."""
    found: dict[str, str] = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            if len(name) > 24 and name[24] == "-":
                found[name[:24]] = obj["Key"]
    return found


def test_a_committed_rows_wal_is_archived_within_the_timeout_encrypted(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str],
        pod_s3: S3Server) -> None:
    name, bucket, passphrase = archived_tenant
    ns = tenants.namespace_of(name)

    def repository_made() -> str | None:
        # The stanza is in the bucket (the archiver made it): archiving can start.
        found = runs.get_policy(real_cluster, ns, "archive").get("status") or {}
        return str((found.get("continuousArchiving") or {}).get("repositoryPath") or "")

    try:
        repository = tenants.eventually(repository_made, timeout=240, interval=1)
    except AssertionError as error:
        policy = runs.get_policy(real_cluster, ns, "archive")
        raise AssertionError(f"{error}\n{json.dumps(policy.get('status'), indent=1)}"
                             f"{runs.explain(real_cluster, ns)}") from None
    # The incarnation's own path under the tenant's: <system identifier>-<time>.
    base = f"/backups/_pgbackrest/{name}/"
    assert repository.startswith(base), repository
    incarnation = stack.psql(real_cluster, ns, "SELECT system_identifier FROM pg_control_system()")
    assert repository[len(base):].startswith(f"{incarnation}-"), (repository, incarnation)

    # The archiver's beats name the incarnation it archives into: the one whose
    # archive the operator reads (not always the newest: a database taken back
    # to a volume kept from before a recovery writes its older one).
    def named() -> str:
        return real_cluster.kubectl(
            "exec", "-n", ns, "postgres-0", "-c", "postgres", "--", "psql", "-U", "postgres",
            "-h", "/var/run/postgresql", "-d", "postgres", "-tAc",
            "SELECT incarnation FROM stackforge.heartbeat WHERE incarnation IS NOT NULL "
            "ORDER BY beat DESC LIMIT 1", check=False).stdout.strip()

    assert f"{base}{tenants.eventually(named, timeout=60, interval=1)}" == repository

    # A row committed at T: its segment is in the bucket by T + archive_timeout.
    printed = stack.psql(
        real_cluster, ns,
        "CREATE TABLE IF NOT EXISTS archived_rows (id int, at timestamptz DEFAULT now());\n"
        "INSERT INTO archived_rows VALUES (1);\n"
        "SELECT pg_walfile_name(pg_current_wal_insert_lsn());")
    committed = time.monotonic()
    segment = printed.splitlines()[-1]  # after psql's command tags
    prefix = f"{repository.lstrip('/')}/archive/{name}/"
    key = tenants.eventually(lambda: _segments(pod_s3, bucket, prefix).get(segment),
                             timeout=ARCHIVE_TIMEOUT_SECONDS * 3, interval=1)
    waited = time.monotonic() - committed
    print(f"segment {segment} of a row committed {waited:.1f}s earlier is archived")
    assert waited <= ARCHIVE_TIMEOUT_SECONDS + PUSH_MARGIN_SECONDS, (segment, waited)

    # Compressed, then encrypted by pgBackRest: not even zstd's magic shows.
    body = pod_s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert key.endswith(".zst") and not body.startswith(ZSTD_MAGIC)
    assert passphrase.encode() not in body

    # pgBackRest itself reads the repository back, with the passphrase from the Secret.
    shown = real_cluster.kubectl("exec", "-n", ns, "postgres-0", "-c", "archiver", "--",
                                 "stackforge-pgbackrest", "info", "--output=json").stdout
    [stanza] = json.loads(shown)
    assert stanza["cipher"] == "aes-256-cbc", stanza
    [wal] = stanza["archive"]
    assert wal["min"] <= segment <= wal["max"], (wal, segment)

    # The policy reports the segment (or a newer one) and stays True.
    def reported() -> dict[str, Any] | None:
        found = _archiving(real_cluster, ns)
        last = ((found or {}).get("status") or {}).get("continuousArchiving") or {}
        return found if (last.get("lastArchivedWal") or "") >= segment else None

    tenants.eventually(reported, timeout=60, interval=2)
    logs = real_cluster.kubectl("logs", "-n", ns, "postgres-0", "--all-containers").stdout
    assert passphrase not in logs and pod_s3.credentials.secret_access_key not in logs


def test_a_new_archive_timeout_reaches_the_running_primary_without_a_restart(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str]) -> None:
    """The timeout was a -c argument of the server and the archiver's heartbeat
    an env of its container: a policy's new timeout rolled the primary."""
    name, _, _ = archived_tenant
    ns = tenants.namespace_of(name)
    core = client.CoreV1Api(real_cluster.api)

    def shown() -> str:
        return stack.psql(real_cluster, ns, "SHOW archive_timeout")

    def restarts(pod: Any) -> dict[str, int]:
        return {c.name: c.restart_count for c in status_of(pod).container_statuses or []}

    def set_timeout(seconds: int) -> None:
        real_cluster.kubectl("patch", "backuppolicies.stackforge.io", "archive", "-n", ns,
                             "--type=merge", "-p", json.dumps({"spec": {"continuousArchiving": {
                                 "archiveTimeoutSeconds": seconds}}}))

    tenants.eventually(lambda: shown() == "1min", timeout=60, interval=1)
    before = core.read_namespaced_pod("postgres-0", ns)
    set_timeout(30)
    try:
        tenants.eventually(lambda: shown() == "30s", timeout=90, interval=1)
        tenants.eventually(lambda: "heartbeat every 15s" in real_cluster.kubectl(
            "logs", "-n", ns, "postgres-0", "-c", "archiver").stdout, timeout=60, interval=2)
        after = core.read_namespaced_pod("postgres-0", ns)
        assert metadata_of(after).uid == metadata_of(before).uid
        assert restarts(after) == restarts(before)
        assert stack.psql(real_cluster, ns, "SELECT pg_postmaster_start_time() < now() - "
                          "interval '20 seconds'") == "t"
    finally:
        set_timeout(ARCHIVE_TIMEOUT_SECONDS)  # the later tests' timeout
        tenants.eventually(lambda: shown() == "1min", timeout=90, interval=1)


def _endpoint_slice(port: int, node_ip: str) -> dict[str, Any]:
    [found] = [d for d in s3_service(node_ip, port) if d["kind"] == "EndpointSlice"]
    return found


def _route_s3(cluster: ClusterHandle, port: int, node_ip: str,
              follow: str | None = None) -> float:
    """Point the S3 Service (what the pods and the operator use) at ``port`` on the
    host. ``follow``: the namespace whose archive egress must then admit the new
    endpoint (the operator follows a Service's endpoints); the seconds that took."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    input=yaml.safe_dump(_endpoint_slice(port, node_ip)))
    moved = time.monotonic()
    if follow is not None:
        tenants.eventually(lambda: _egress_admits(cluster, follow, node_ip, port),
                           timeout=60, interval=0.5)
    return time.monotonic() - moved


def _egress_admits(cluster: ClusterHandle, namespace: str, ip: str, port: int) -> bool:
    policy = client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(
        "archive-archive-egress", namespace)
    return any(p.port == port and any(to.ip_block and to.ip_block.cidr == f"{ip}/32"
                                      for to in rule.to or [])
               for rule in spec_of(policy).egress or [] for p in rule.ports or [])


def _condition(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    return runs.condition_of(runs.get_policy(cluster, namespace, "archive"),
                             "ContinuousArchiving")


def test_an_unreachable_bucket_turns_archiving_false_and_the_queue_follows_without_a_gap(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str],
        pod_s3: S3Server) -> None:
    name, bucket, _ = archived_tenant
    ns = tenants.namespace_of(name)
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    with Receiver() as receiver:
        channels = Channels(receiver)
        channels.subscribe(real_cluster, name, ns, slack=False)
        try:
            _outage(real_cluster, name, bucket, pod_s3, channels)
        finally:
            client.CustomObjectsApi(real_cluster.api).patch_namespaced_custom_object(
                API_GROUP, API_VERSION, ns, "stackforgetenants", name,
                {"spec": {"notifications": None}})


def _outage(real_cluster: ClusterHandle, name: str, bucket: str, pod_s3: S3Server,
            channels: Channels) -> None:
    ns = tenants.namespace_of(name)
    key = "ArchivingFailed/archive"
    local = real_cluster.local
    assert local is not None and local.node is not None
    node_ip = local.node.network.node_ip
    # The primary says how far the archive reaches (its exporter's figure).
    tenants.eventually(lambda: _archived_through(real_cluster, ns), timeout=300, interval=2)
    # The S3 Service leads nowhere: the pods and the operator lose the bucket
    # alike (both reach it through the Service), while its data stays.
    cut = datetime.now(UTC)
    _route_s3(real_cluster, 1, node_ip)
    try:
        down = tenants.eventually(
            lambda: (c := _condition(real_cluster, ns)).get("status") == "False" and c,
            timeout=300, interval=2)
        assert down["reason"] == "ArchivingStalled", down
        assert "cannot be read" in down["message"], down
        tenants.wait_condition(real_cluster, name, "BackupHealthy", "False", timeout=60)
        # The tenant's channel hears of it, once.
        [opened] = tenants.eventually(lambda: channels.webhook(key, "opened"), timeout=60)
        assert opened["event"] == "ArchivingFailed" and "cannot archive WAL" in opened[
            "summary"], opened
        # Written while the bucket is away: archived once it is back.
        printed = stack.psql(
            real_cluster, ns,
            "CREATE TABLE IF NOT EXISTS outage_rows (id int);\n"
            "INSERT INTO outage_rows SELECT generate_series(1, 1000);\n"
            "SELECT pg_walfile_name(pg_current_wal_insert_lsn());")
        written = printed.splitlines()[-1]
        written_at = datetime.now(UTC)
        # The heartbeats went on, in segments the primary could not archive:
        # the figure stays before the cut (the recoverability window with it).
        through = _archived_through(real_cluster, ns)
        assert through is not None and through < cut, (through, cut)
    finally:
        _route_s3(real_cluster, pod_s3.port, node_ip)

    policy = _archived_up_to(real_cluster, ns, written)
    # Once the queue is archived, the figure passes the rows written during the outage.
    tenants.eventually(lambda: (_archived_through(real_cluster, ns) or cut) > written_at,
                       timeout=300, interval=2)
    # No longer failing (Unknown, not True: this policy has made no dump yet).
    tenants.eventually(lambda: runs.condition_of(tenants.get(real_cluster, name) or {},
                                                 "BackupHealthy").get("status") != "False",
                       timeout=60, interval=1)
    # Every segment from the first to the newest is in the archive: none was
    # skipped while the bucket was away.
    _assert_no_gap(pod_s3, bucket, name, policy, written)
    [resolved] = tenants.eventually(lambda: channels.webhook(key, "resolved"), timeout=60)
    assert resolved["since"] == opened["since"], (opened, resolved)
    assert len(channels.webhook(key, "opened")) == 1


def _archived_through(cluster: ClusterHandle, namespace: str) -> datetime | None:
    """The policy's archivedThrough: how far the primary says the archive reaches."""
    policy = runs.get_policy(cluster, namespace, "archive")
    found = ((policy.get("status") or {}).get("continuousArchiving") or {}).get(
        "archivedThrough")
    return runs.parse_time(found) if found else None


def _archived_up_to(cluster: ClusterHandle, namespace: str, segment: str,
                    seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The policy once it reports ``segment`` (or a later one) archived. ``seen``
    collects every ContinuousArchiving condition met on the way."""
    def caught_up() -> dict[str, Any] | None:
        if seen is not None:
            condition = _condition(cluster, namespace)
            if not seen or seen[-1] != condition:
                seen.append(condition)
        found = _archiving(cluster, namespace)
        last = ((found or {}).get("status") or {}).get("continuousArchiving") or {}
        return found if (last.get("lastArchivedWal") or "") >= segment else None

    try:
        found: dict[str, Any] = tenants.eventually(caught_up, timeout=300, interval=2)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{runs.explain(cluster, namespace)}") from None
    return found


def _assert_no_gap(s3: S3Server, bucket: str, name: str, policy: dict[str, Any],
                   segment: str) -> None:
    """Every segment of the incarnation, from the first to ``segment``, is archived."""
    repository = policy["status"]["continuousArchiving"]["repositoryPath"]
    names = sorted(_segments(s3, bucket, f"{repository.lstrip('/')}/archive/{name}/"))
    assert all(re.fullmatch(r"00000001[0-9A-F]{16}", n) for n in names), names
    numbers = [int(n[8:16], 16) * 256 + int(n[16:], 16) for n in names]
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), names
    assert segment in names


def _rows_then_switch(cluster: ClusterHandle, namespace: str, table: str) -> str:
    """Commit 1,000 rows into ``table`` and end their WAL segment; that segment's name."""
    printed = stack.psql(
        cluster, namespace,
        f"CREATE TABLE IF NOT EXISTS {table} (id int);\n"
        f"INSERT INTO {table} SELECT generate_series(1, 1000);\n"
        "SELECT pg_walfile_name(pg_switch_wal());")
    return printed.splitlines()[-1]


@pytest.mark.chaos
def test_archiving_rides_out_s3_errors_and_catches_up_after_500s_without_a_gap(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str],
        pod_s3: S3Server, record_property: Callable[[str, object], None]) -> None:
    """#17 case 8 for WAL archiving: pgBackRest (HTTPS only) through a fault proxy
    that terminates TLS with the S3 server's own certificate. Every third request
    answered 503 and every answer 0.2 s late: segments still arrive and the policy
    never says otherwise. Then 500 to everything: ContinuousArchiving False with a
    reason. Healed: the queue follows, no segment missing."""
    name, bucket, _ = archived_tenant
    ns = tenants.namespace_of(name)
    local = real_cluster.local
    assert local is not None and local.node is not None
    assert pod_s3.serving_tls is not None and pod_s3.ca_bundle is not None
    node_ip = local.node.network.node_ip
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    archiving_since = _condition(real_cluster, ns)["lastTransitionTime"]
    with S3FaultProxy(pod_s3.endpoint, host=node_ip,
                      serving=(pod_s3.serving_tls.cert, pod_s3.serving_tls.key),
                      upstream_ca=pod_s3.ca_bundle) as proxy:
        # The egress first: this test is about S3's answers, not about its move.
        followed = _route_s3(real_cluster, proxy.port, node_ip, follow=ns)
        try:
            proxy.fail_every(3, 503)
            proxy.delay(0.2)
            seen: list[dict[str, Any]] = []
            # Segments until at least three requests were failed: how many a
            # segment takes varies, and the proxy counts from its start.
            for _ in range(5):
                started = time.monotonic()  # (the figure: the last segment's)
                flaky = _rows_then_switch(real_cluster, ns, "flaky_s3_rows")
                _archived_up_to(real_cluster, ns, flaky, seen)
                if proxy.failed >= 3:
                    break
            flaky_seconds = time.monotonic() - started
            assert proxy.failed >= 3, (proxy.requests, proxy.failed)
            # Ridden out: ContinuousArchiving stayed True all along.
            seen.append(_condition(real_cluster, ns))
            assert all(c["lastTransitionTime"] == archiving_since for c in seen), seen
            flaky_failed, flaky_requests = proxy.failed, proxy.requests

            proxy.heal()
            proxy.fail_all(500)
            failing_from = time.monotonic()
            failing = _rows_then_switch(real_cluster, ns, "failing_s3_rows")
            down = tenants.eventually(
                lambda: (c := _condition(real_cluster, ns)).get("status") == "False" and c,
                timeout=300, interval=2)
            failed_after = time.monotonic() - failing_from
            assert down["reason"] and down["message"], down
        finally:
            proxy.heal()
            _route_s3(real_cluster, pod_s3.port, node_ip)
    healed = time.monotonic()
    policy = _archived_up_to(real_cluster, ns, failing)
    caught_up = time.monotonic() - healed
    _assert_no_gap(pod_s3, bucket, name, policy, failing)
    assert stack.psql(real_cluster, ns, "SELECT count(*) FROM failing_s3_rows") == "1000"
    record_property("chaos", f"the archive egress followed the S3 Service to the proxy in "
                             f"{followed:.1f} s; "
                             f"WAL archiving through S3 answering {flaky_failed} of "
                             f"{flaky_requests} requests 503, all 0.2 s late: segment archived "
                             f"{flaky_seconds:.1f} s after its switch, condition never False; "
                             f"all 500: ContinuousArchiving False ({down['reason']}) after "
                             f"{failed_after:.1f} s; healed: caught up in {caught_up:.1f} s, "
                             "no segment missing")


@pytest.mark.chaos
def test_the_primary_deleted_during_a_backup_fails_that_run_only(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str],
        pod_s3: S3Server, record_property: Callable[[str, object], None]) -> None:
    """#17 case 4: the primary's pod deleted while its dump streams into the bucket.
    The run ends Failed with a reason, leaves no manifest and no open upload; the
    primary comes back with every row; the next run succeeds; the archive has every
    WAL segment, those of the deletion's moment included."""
    name, bucket, _ = archived_tenant
    ns = tenants.namespace_of(name)
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    # Enough data that the dump takes a while (md5 text barely compresses); the app's,
    # as the backup's role reads with the app's privileges.
    stack.psql(real_cluster, ns, "CREATE TABLE bulk AS SELECT i, md5(i::text) || "
                                 "md5((i * 7)::text) AS filler FROM generate_series(1, 1500000) i",
               as_app=True)
    # The backup reads as the app: the module's earlier tables made by the superuser
    # (outage_rows) would fail it DatabasePermissionDenied, not this test's fault.
    owner = runs.app_owner(real_cluster, ns)
    stack.psql(real_cluster, ns, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{owner}"')
    checksum_sql = "SELECT count(*) || ':' || sum(i) || ':' || max(filler) FROM bulk"
    seeded = stack.psql(real_cluster, ns, checksum_sql)
    s3 = pod_s3.client()

    def dump_uploads() -> list[Any]:
        # The dump's, not pgBackRest's (it pushes WAL segments in parts too).
        found: list[Any] = s3.list_multipart_uploads(
            Bucket=bucket, Prefix=f"backups/{name}/").get("Uploads", [])
        return found

    try:
        runs.ask_backup(real_cluster, ns, "archive", "cut-short")
        # Streaming into the bucket: the dump is under way.
        try:
            tenants.eventually(dump_uploads, timeout=180, interval=0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{runs.explain(real_cluster, ns)}") from None
        core = client.CoreV1Api(real_cluster.api)
        deleted = uid_of(core.read_namespaced_pod("postgres-0", ns))
        real_cluster.kubectl("delete", "pod", "-n", ns, "postgres-0", "--wait=false")
        deleted_at = time.monotonic()
        cut = runs.backup_ran(real_cluster, ns, "archive", "cut-short")
        failed_after = time.monotonic() - deleted_at
        assert cut.returncode != 0, cut.termination_message
        outcome = cut.outcome()
        assert outcome["result"] == "Failed" and outcome["reason"], outcome
        run_prefix = f"backups/{name}/{outcome['runId']}/"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=run_prefix)
                .get("Contents", [])]
        assert not [k for k in keys if k.endswith("manifest.json")], keys
        assert dump_uploads() == []

        # The primary's successor Ready (not the tenant's Ready: the failed run keeps
        # its BackupHealthy False).
        def successor_ready() -> bool:
            try:
                pod = core.read_namespaced_pod("postgres-0", ns)
            except client.ApiException:
                return False
            return uid_of(pod) != deleted and pods.is_ready(pod)

        tenants.eventually(successor_ready, timeout=180, interval=1)
        primary_back = time.monotonic() - deleted_at
        assert stack.psql(real_cluster, ns, checksum_sql) == seeded
        ran = runs.run_backup(real_cluster, ns, "archive", "after-the-cut", timeout=300)
        assert ran.returncode == 0, ran.termination_message + runs.explain(real_cluster, ns)
        assert ran.outcome()["result"] == "Succeeded", ran.outcome()
        manifest = runs.backup_manifest(pod_s3, bucket, name, ran.outcome()["runId"])
        assert manifest, manifest
        stack.wait_ready(real_cluster, name)
        written = stack.psql(real_cluster, ns, "SELECT pg_walfile_name(pg_current_wal_lsn()) "
                                               "FROM (SELECT pg_switch_wal()) AS switched")
        _assert_no_gap(pod_s3, bucket, name, _archived_up_to(real_cluster, ns, written),
                       written)
        record_property("chaos", f"the run failed {failed_after:.1f} s after the deletion "
                                 f"({outcome['reason']}: {outcome['message'][:80]}); no "
                                 f"manifest, no open upload; primary back after "
                                 f"{primary_back:.1f} s with every row; the next run "
                                 f"succeeded; WAL up to {written} with no gap")
    finally:
        # The later tests of the module back up and restore this database (not
        # hiding this test's own failure when the primary is not back).
        with contextlib.suppress(AssertionError):
            stack.psql(real_cluster, ns, "DROP TABLE IF EXISTS bulk")


def _physical_spec(cluster: ClusterHandle, namespace: str, physical: dict[str, Any] | None) -> None:
    cluster.kubectl("patch", "backuppolicies.stackforge.io", "archive", "-n", namespace,
                    "--type=merge", "-p", json.dumps({"spec": {"physicalBackups": physical}}))


def _physical_status(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    return dict((runs.get_policy(cluster, namespace, "archive").get("status") or {}).get(
        "physicalBackups") or {})


def _pgbackrest_info(cluster: ClusterHandle, namespace: str) -> dict[str, Any]:
    shown = cluster.kubectl("exec", "-n", namespace, "postgres-0", "-c", "archiver", "--",
                            "stackforge-pgbackrest", "info", "--output=json").stdout
    [stanza] = json.loads(shown)
    return dict(stanza)


def test_physical_backups_run_on_their_schedules_and_expire_by_retention(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str],
        pod_s3: S3Server) -> None:
    name, bucket, _ = archived_tenant
    ns = tenants.namespace_of(name)
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    # A full backup once a year (so only the first, asked for at once: the
    # repository has none), an incremental one every minute, one full kept.
    _physical_spec(real_cluster, ns, {"fullSchedule": "0 0 1 1 *",
                                      "incrementalSchedule": "* * * * *",
                                      "retention": {"fullCount": 1}})
    try:
        def backed_up() -> dict[str, Any] | None:
            found = _physical_status(real_cluster, ns)
            kinds = [b["type"] for b in found.get("backups") or []]
            return found if kinds[:1] == ["full"] and "incr" in kinds else None

        try:
            first = tenants.eventually(backed_up, timeout=300, interval=2)
        except AssertionError as error:
            logs = real_cluster.kubectl("logs", "-n", ns, "postgres-0", "-c", "archiver").stdout
            raise AssertionError(f"{error}\n{_physical_status(real_cluster, ns)}\n{logs}"
                                 f"{runs.explain(real_cluster, ns)}") from None
        policy = runs.get_policy(real_cluster, ns, "archive")
        condition = runs.condition_of(policy, "PhysicalBackups")
        assert condition["status"] == "True", condition
        # Restorable to a moment now: BackupFresh is the RPO check (no dump has run).
        fresh = tenants.eventually(
            lambda: (c := runs.condition_of(runs.get_policy(real_cluster, ns, "archive"),
                                            "BackupFresh")).get("reason") == "WithinRPO" and c,
            timeout=30, interval=1)
        assert fresh["status"] == "True", fresh
        full = first["backups"][0]
        # What the policy says is what pgBackRest itself lists (it decrypts the
        # repository; the operator reads object names and times only).
        info = _pgbackrest_info(real_cluster, ns)
        listed = [b["label"] for b in info["backup"]]
        labels = [b["label"] for b in first["backups"]]
        assert labels == listed[:len(labels)], (labels, listed)
        assert all(b["label"].startswith(f"{full['label']}_") for b in first["backups"][1:])
        window = first["recoverabilityWindow"]
        assert window["firstPoint"] == full["stopTime"], (window, full)
        assert runs.parse_time(window["lastPoint"]) >= runs.parse_time(window["firstPoint"])
        wal_before = info["archive"][0]["min"]

        # A new full backup (now due every minute) expires the first one with
        # the incrementals that depend on it, and the WAL before it.
        _physical_spec(real_cluster, ns, {"fullSchedule": "* * * * *",
                                          "retention": {"fullCount": 1}})

        def replaced() -> dict[str, Any] | None:
            found = _physical_status(real_cluster, ns)
            fulls = [b for b in found.get("backups") or [] if b["type"] == "full"]
            return found if fulls and fulls[0]["label"] > full["label"] else None

        second = tenants.eventually(replaced, timeout=300, interval=2)
        # Held still: no more fires while the rest is checked.
        _physical_spec(real_cluster, ns, {"fullSchedule": "0 0 1 1 *",
                                          "retention": {"fullCount": 1}})
        assert full["label"] not in {b["label"] for b in second["backups"]}
        prefix = f"{first_repository(real_cluster, ns)}/backup/{name}/{full['label']}/"
        gone = pod_s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        assert gone.get("KeyCount", 0) == 0, gone.get("Contents")
        assert second["recoverabilityWindow"]["firstPoint"] == second["backups"][0]["stopTime"]
        info = _pgbackrest_info(real_cluster, ns)
        assert info["archive"][0]["min"] > wal_before, (info["archive"], wal_before)
        # Answered: the request is gone from the pod and the status.
        tenants.eventually(lambda: not _physical_status(real_cluster, ns).get("pendingRequest"),
                           timeout=60, interval=2)
        pod = client.CoreV1Api(real_cluster.api).read_namespaced_pod("postgres-0", ns)
        assert "stackforge.io/physical-backup-request" not in (metadata_of(pod).annotations or {})
        # The retention its expiry ran by stays on record: the repository is
        # judged by it (a full backup it should have removed turns the
        # condition False), and here nothing is left over.
        answered = _physical_status(real_cluster, ns)
        assert str(answered.get("lastRequest")).endswith(" full count 1"), answered
        policy = runs.get_policy(real_cluster, ns, "archive")
        assert runs.condition_of(policy, "PhysicalBackups")["status"] == "True", policy["status"]
    finally:
        _physical_spec(real_cluster, ns, None)


def first_repository(cluster: ClusterHandle, namespace: str) -> str:
    policy = runs.get_policy(cluster, namespace, "archive")
    return str(policy["status"]["continuousArchiving"]["repositoryPath"]).strip("/")


def _physical_drill(name: str, tenant: str, namespace: str, backup: dict[str, Any],
                    queries: list[dict[str, Any]],
                    sandbox: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "DRDrill",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"tenantRef": {"name": tenant}, "backupPolicyRef": {"name": "archive"},
                     "once": True, "objectives": {"rtoSeconds": 600, "rpoSeconds": 60},
                     "backup": {"method": "Physical", **backup},
                     "checks": {"queries": queries}, **({"sandbox": sandbox} if sandbox else {})}}


def _scratch_volume(cluster: ClusterHandle,
                    namespace: str) -> tuple[str | None, str | None, Any] | None:
    """The running scratch database's (claim's class, claim's phase, server's resources)
    in a sandbox of ``namespace``'s drills, once there is one."""
    core = client.CoreV1Api(cluster.api)
    for sandbox in _sandboxes(cluster, namespace):
        claims = core.list_namespaced_persistent_volume_claim(sandbox).items
        found = core.list_namespaced_pod(sandbox, label_selector=(
            "app.kubernetes.io/component=scratch-postgres")).items
        if claims and found and status_of(found[0]).phase == "Running":
            server = next(c for c in spec_of(found[0]).containers if c.name == "postgres")
            return (spec_of(claims[0]).storage_class_name, status_of(claims[0]).phase,
                    server.resources)
    return None


def _rollup(cluster: ClusterHandle, namespace: str, drill: str, type_: str) -> dict[str, Any]:
    found = runs.get_drill(cluster, namespace, drill)
    return runs.condition_of(found, type_) if found.get("status") else {}


def _sandboxes(cluster: ClusterHandle, namespace: str) -> list[str]:
    listed = client.CoreV1Api(cluster.api).list_namespace(
        label_selector=f"{API_GROUP}/drill-namespace={namespace}")
    return [name_of(n) for n in listed.items]


def test_a_drill_restores_the_database_as_it_was_at_a_moment(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str]) -> None:
    """Rows written around a moment T, a table dropped at T + 10 s: a Physical drill
    restored to T has the table and every row committed before T, none after. A
    moment before the recoverability window is refused, and so is one after it
    until the archive passes it, with the window in the message; neither makes a
    sandbox."""
    name, _, _ = archived_tenant
    ns = tenants.namespace_of(name)
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    _physical_spec(real_cluster, ns, {"fullSchedule": "0 0 1 1 *",
                                      "retention": {"fullCount": 1}})
    drills = ("pitr", "pitr-too-early", "pitr-too-late")
    try:
        window = tenants.eventually(
            lambda: _physical_status(real_cluster, ns).get("recoverabilityWindow"),
            timeout=300, interval=2)
        def refused(drill: str, moment: datetime, condition: str) -> dict[str, Any]:
            """The condition of a drill to ``moment`` once it says the moment is outside."""
            runs.apply(real_cluster, _physical_drill(
                drill, name, ns,
                {"source": "PointInTime", "pointInTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")},
                []))
            found: dict[str, Any] = tenants.eventually(
                lambda: (c := _rollup(real_cluster, ns, drill, condition)).get(
                    "reason") == "TargetOutsideWindow" and c, timeout=60, interval=1)
            return found

        stalled = refused("pitr-too-early",
                          runs.parse_time(window["firstPoint"]) - timedelta(days=1), "Stalled")
        assert stalled["status"] == "True", stalled
        assert "is before the recoverability window" in stalled["message"], stalled
        assert window["firstPoint"].rstrip("Z") in stalled["message"], (stalled, window)
        # A moment the archive has not reached waits for it, refused meanwhile.
        waiting = refused("pitr-too-late", datetime.now(UTC) + timedelta(hours=1), "Reconciling")
        assert "is after the recoverability window" in waiting["message"], waiting
        assert _sandboxes(real_cluster, ns) == [], "a refused drill made a sandbox"
        real_cluster.kubectl("delete", "drdrills.stackforge.io", "pitr-too-late", "-n", ns)

        # One row a quarter second for ten seconds; T falls between two of them.
        stack.psql(real_cluster, ns,
                   "CREATE TABLE ledger (id int PRIMARY KEY, "
                   "at timestamptz NOT NULL DEFAULT clock_timestamp());"
                   "CREATE TABLE precious (id int);"
                   "INSERT INTO precious SELECT generate_series(1, 7);")
        # \gexec runs each statement on its own: each INSERT is its own commit.
        stack.psql(real_cluster, ns,
                   "SELECT sql FROM generate_series(1, 40) AS i, LATERAL (VALUES "
                   "(1, format('INSERT INTO ledger (id) VALUES (%s)', i)), "
                   "(2, 'SELECT pg_sleep(0.25)')) AS step(n, sql) ORDER BY i, n \\gexec\n")
        times = [runs.parse_time(line.split("|")[1].replace(" ", "T"))
                 for line in stack.psql(real_cluster, ns, "SELECT id, to_char(at AT TIME ZONE "
                                        "'UTC', 'YYYY-MM-DD HH24:MI:SS.US\"Z\"') FROM ledger "
                                        "ORDER BY id").splitlines()]
        before = 20
        target = times[before - 1] + (times[before] - times[before - 1]) / 2
        target_text = target.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        time.sleep(max(0.0, (target + timedelta(seconds=10)
                             - datetime.now(UTC)).total_seconds()))
        stack.psql(real_cluster, ns, "DROP TABLE precious;")

        # On a volume of the node's class, with resources of its own (the
        # sandbox's settings), rather than the node's disk, best effort.
        sandbox = {"storageClassName": STORAGE_CLASS,
                   "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}
        runs.apply(real_cluster, _physical_drill(
            "pitr", name, ns, {"source": "PointInTime", "pointInTime": target_text}, [
                {"name": "rows-before-target", "expectedValue": f"{before}:{before}",
                 "sql": "SELECT count(*) || ':' || max(id) FROM ledger"},
                {"name": "none-after-target", "expectedRows": 0,
                 "sql": f"SELECT id FROM ledger WHERE at > '{target_text}'"},  # noqa: S608
                {"name": "dropped-table-is-there", "expectedValue": "7",
                 "sql": "SELECT count(*) FROM precious"},
                # Checks log in as a role of their own: the scratch server's
                # environment holds the bucket's keys and the passphrase, and
                # pg_authid the restored roles' password hashes.
                {"name": "not-the-superuser", "expectedValue": "off|false|false|false",
                 "sql": "SELECT current_setting('is_superuser') || '|' || "
                        "pg_has_role('pg_execute_server_program', 'MEMBER') || '|' || "
                        "has_function_privilege('pg_read_binary_file(text)', 'EXECUTE') "
                        "|| '|' || has_table_privilege('pg_authid', 'SELECT')"},
            ], sandbox))
        # It waits until the archive reaches T (a heartbeat after T archived).
        try:
            volume = tenants.eventually(lambda: _scratch_volume(real_cluster, ns),
                                        timeout=240, interval=0.5)
            done = runs.finished_drill(real_cluster, ns, "pitr", timeout=420)
        except AssertionError as error:
            sandboxes = _sandboxes(real_cluster, ns)
            extra = "".join(stack.diagnosis(real_cluster, s) for s in sandboxes)
            raise AssertionError(f"{error}\n{extra}{runs.explain(real_cluster, ns)}") from None
        result = done["status"]["lastResult"]
        assert result["verdict"] == "Passed", result
        assert {c["name"]: c["passed"] for c in result["checks"]} == {
            "connectivity": True, "recovery": True, "rows-before-target": True,
            "none-after-target": True, "dropped-table-is-there": True,
            "not-the-superuser": True}, result["checks"]
        assert runs.parse_time(result["recoveryTarget"]) == target, result
        claim_class, claim_phase, resources = volume
        assert (claim_class, claim_phase) == (STORAGE_CLASS, "Bound"), volume
        assert resources.requests == {"cpu": "100m", "memory": "256Mi"}, volume
        point = runs.parse_time(result["recoveryPointTime"])
        assert times[before - 1] <= point <= target, (point, times[before - 1], target)
        assert result["rpoSeconds"] <= 1 and result["rtoSeconds"] > 0, result
        assert result["backupLocation"].endswith(first_repository(real_cluster, ns)), result
        # The source is untouched: the table is gone there, the rows after T are not.
        assert stack.psql(real_cluster, ns, "SELECT to_regclass('precious') IS NULL") == "t"
        assert stack.psql(real_cluster, ns, "SELECT count(*) FROM ledger") == "40"
        tenants.eventually(lambda: not _sandboxes(real_cluster, ns), timeout=120, interval=1)
        # The too-early drill never started anything.
        assert not (runs.get_drill(real_cluster, ns, "pitr-too-early").get("status") or {}).get(
            "lastResult")
    finally:
        for drill in drills:
            real_cluster.kubectl("delete", "drdrills.stackforge.io", drill, "-n", ns,
                                 "--ignore-not-found", "--wait=false")
        _physical_spec(real_cluster, ns, None)


def _objects(s3: S3Server, bucket: str, prefix: str) -> dict[str, str]:
    """Object key -> ETag of everything under ``prefix``."""
    found: dict[str, str] = {}
    for page in s3.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return found


def test_a_tenant_created_from_the_archive_has_the_data_of_its_moment(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str],
        pod_s3: S3Server) -> None:
    """A new tenant from another's backups at T: the source's rows before T and none
    after (the primary's restore egress gone once restored); it archives under
    its own path; the source's repository gets nothing
    from it (the objects there before are unchanged, and every new one is the
    source's own WAL of its own timeline)."""
    name, bucket, _ = archived_tenant
    ns = tenants.namespace_of(name)
    clone = f"{name}-past"
    clone_ns = tenants.namespace_of(clone)
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    real_cluster.kubectl(
        "patch", "backuppolicies.stackforge.io", "archive", "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {
            "physicalBackups": {"fullSchedule": "0 0 1 1 *", "retention": {"fullCount": 1}},
            "continuousArchiving": {"allowedRestoreNamespaces": [clone_ns]}}}))
    try:
        tenants.eventually(
            lambda: _physical_status(real_cluster, ns).get("recoverabilityWindow"),
            timeout=300, interval=2)
        stack.psql(real_cluster, ns, "CREATE TABLE cloned (id int PRIMARY KEY);"
                                     "INSERT INTO cloned SELECT generate_series(1, 10);")
        time.sleep(1.2)
        target = stack.psql(real_cluster, ns, "SELECT to_char(clock_timestamp() AT TIME ZONE "
                                              "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        time.sleep(1.2)
        stack.psql(real_cluster, ns, "INSERT INTO cloned SELECT generate_series(11, 20);")
        repository = first_repository(real_cluster, ns)
        before = _objects(pod_s3, bucket, repository + "/")

        _archiving_policy(real_cluster, pod_s3, clone, bucket)
        manifest = stack.postgres_only(clone)
        # A moment the archive has not reached: the tenant waits, and nothing of
        # it exists yet (a primary now would initialise instead). An hour ahead,
        # not T: T enters the window once a heartbeat after it is archived and
        # the policy's status shows it, which can come before the tenant's first
        # reconcile (bootstrap is immutable: a new tenant of the same name next).
        ahead = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest["spec"]["bootstrap"] = {"recovery": {"tenant": name, "pointInTime": ahead}}
        tenants.apply(real_cluster, manifest)
        waiting = tenants.eventually(
            lambda: (c := runs.condition_of(tenants.get(real_cluster, clone, clone_ns) or {},
                                            "Reconciling")).get("reason")
            == "TargetOutsideWindow" and c, timeout=60, interval=1)
        assert "spec.bootstrap.recovery.pointInTime" in waiting["message"], waiting
        assert "after the recoverability window" in waiting["message"], waiting
        apps = client.AppsV1Api(real_cluster.api)
        assert not apps.list_namespaced_stateful_set(clone_ns).items
        tenants.delete(real_cluster, clone, namespace=clone_ns)
        # T itself: the tenant waits as long as T is past the window (up to a
        # timeout and a half), then restores.
        manifest["spec"]["bootstrap"] = {"recovery": {"tenant": name, "pointInTime": target}}
        tenants.apply(real_cluster, manifest)

        def restored() -> dict[str, Any] | None:
            found = tenants.get(real_cluster, clone, clone_ns) or {}
            done = ((found.get("status") or {}).get("bootstrap") or {}).get("completionTime")
            ready = runs.condition_of(found, "Ready").get("status") == "True"
            return found if done and ready else None

        try:
            found = tenants.eventually(restored, timeout=420, interval=2)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{stack.diagnosis(real_cluster, clone_ns)}") from None
        record = found["status"]["bootstrap"]
        assert record["sourceTenant"] == name and record["backupPolicy"] == "archive", record
        assert record["repositoryPath"].strip("/") == repository, record
        assert runs.parse_time(record["recoveryTarget"]) == runs.parse_time(target), record
        # The copies of the source's Secrets go once the restore is done.
        core = client.CoreV1Api(real_cluster.api)
        tenants.eventually(lambda: not {name_of(s) for s in core.list_namespaced_secret(
            clone_ns).items} & {"bootstrap-s3-credentials", "bootstrap-s3-ca",
                                 "bootstrap-repository-cipher"}, timeout=60, interval=1)
        stack.wait_ready(real_cluster, clone)
        assert stack.psql(real_cluster, clone_ns, "SELECT count(*) || ':' || max(id) "
                                                  "FROM cloned") == "10:10"
        assert stack.psql(real_cluster, ns, "SELECT count(*) FROM cloned") == "20"
        # The primary's route to the source's bucket goes with the restore.
        assert "restore-egress" not in {name_of(p) for p in client.NetworkingV1Api(
            real_cluster.api).list_namespaced_network_policy(clone_ns).items}
        # Its own archive, under its own name.
        own = tenants.eventually(lambda: _archiving(real_cluster, clone_ns), timeout=300,
                                 interval=2)
        own_path = own["status"]["continuousArchiving"]["repositoryPath"]
        assert f"/_pgbackrest/{clone}/" in own_path and repository not in own_path, own_path

        after = _objects(pod_s3, bucket, repository + "/")
        assert {k: after.get(k) for k in before} == before
        added = sorted(set(after) - set(before))
        assert all(k.startswith(f"{repository}/archive/{name}/") for k in added), added
        assert all(k.rsplit("/", 1)[-1].startswith("00000001") for k in added), added
    finally:
        tenants.discard(real_cluster, clone, clone_ns)
        real_cluster.kubectl(
            "patch", "backuppolicies.stackforge.io", "archive", "-n", ns, "--type=merge", "-p",
            json.dumps({"spec": {"physicalBackups": None,
                                 "continuousArchiving": {"allowedRestoreNamespaces": None}}}))


def _recovery(cluster: ClusterHandle, name: str, namespace: str) -> dict[str, Any]:
    found = tenants.get(cluster, name, namespace) or {}
    return dict((found.get("status") or {}).get("recovery") or {})


def _annotate(cluster: ClusterHandle, name: str, namespace: str, **values: str) -> None:
    cluster.kubectl("annotate", "--overwrite", "stackforgetenants.stackforge.io", name,
                    "-n", namespace, *(f"{API_GROUP}/{k.replace('_', '-')}={v}"
                                       for k, v in values.items()))


def _checks_drill(name: str, tenant: str, namespace: str,
                  queries: list[dict[str, Any]]) -> dict[str, Any]:
    """A DRDrill that never runs: its queries verify the in-place recovery."""
    drill = _physical_drill(name, tenant, namespace, {"source": "Latest"}, queries)
    drill["spec"].pop("once")
    drill["spec"]["suspend"] = True
    return drill


def _app_replicas(cluster: ClusterHandle, namespace: str) -> int:
    found = client.AppsV1Api(cluster.api).read_namespaced_deployment("api", namespace)
    return int(found.spec.replicas or 0)


def _recovered(cluster: ClusterHandle, name: str, namespace: str, phase: str,
               seen_apps: set[int]) -> dict[str, Any]:
    """Wait for the recovery to reach ``phase``; ``seen_apps`` gains the app's replica
    count whenever the recovery is between stopping writes and switching over."""
    def reached() -> dict[str, Any] | None:
        found = _recovery(cluster, name, namespace)
        if found.get("phase") in ("Restoring", "Verifying"):
            # Counted only when the phase is the same after the read: phases can
            # pass quickly, and a count read after the switch-over is 1.
            replicas = _app_replicas(cluster, namespace)
            again = _recovery(cluster, name, namespace)
            if (again.get("phase"), again.get("request")) == (
                    found.get("phase"), found.get("request")):
                seen_apps.add(replicas)
        return found if found.get("phase") == phase else None
    try:
        record: dict[str, Any] = tenants.eventually(reached, timeout=420, interval=1)
        return record
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_recovery(cluster, name, namespace)}\n"
                             f"{stack.diagnosis(cluster, namespace)}") from None


def _serving_mark(core: client.CoreV1Api, namespace: str,
                  claim: str) -> tuple[str | None, str | None]:
    """The claim's marks: the start of the recovery that ended on it, its moment."""
    found = core.read_namespaced_persistent_volume_claim(claim, namespace).metadata
    notes = (found.annotations if found else None) or {}
    return (notes.get(recovery.SERVING_ANNOTATION),
            notes.get(recovery.REQUEST_MARK_ANNOTATION))


def test_an_in_place_recovery_restores_the_tenant_or_leaves_it_on_its_old_database(
        real_cluster: ClusterHandle, archived_tenant: tuple[str, str, str]) -> None:
    """The runbook's "database corruption": a table dropped at T + 10 s, the tenant
    recovered in place to T. Unconfirmed, or before the window, nothing starts.
    A recovery whose verification fails rolls back: the tenant runs its old
    database (the table still dropped, every row there), the restored volume is
    kept. One that passes: the table and the rows before T are back, owners and
    grants as they were, the apps stopped meanwhile and running after; the old
    volume stays until a person deletes it. Every step is recorded with its
    times."""
    name, _, _ = archived_tenant
    ns = tenants.namespace_of(name)
    tenants.eventually(lambda: _archiving(real_cluster, ns), timeout=300, interval=2)
    _physical_spec(real_cluster, ns, {"fullSchedule": "0 0 1 1 *",
                                      "retention": {"fullCount": 1}})
    manifest = stack.postgres_only(name)
    manifest["spec"]["components"]["apps"] = [{
        "name": "api", "image": TESTAPP_IMAGE, "port": 8080, "healthCheckPath": "/healthz",
        "replicas": 1, "env": {"PORT": "8080"}}]
    tenants.apply(real_cluster, manifest)
    drills = ("verify-wrong", "verify-right")
    try:
        window = tenants.eventually(
            lambda: _physical_status(real_cluster, ns).get("recoverabilityWindow"),
            timeout=300, interval=2)
        stack.wait_ready(real_cluster, name)
        # Unconfirmed: refused, saying what confirms it; nothing stops.
        early = (runs.parse_time(window["firstPoint"]) - timedelta(days=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        _annotate(real_cluster, name, ns, recover_to=early)
        refused = tenants.eventually(
            lambda: (r := _recovery(real_cluster, name, ns)).get("phase") == "Refused" and r,
            timeout=60, interval=1)
        assert f"recover-confirm={ns}/{name}@{early}" in refused["message"], refused
        # Confirmed, but before the window: refused with the window in the message.
        _annotate(real_cluster, name, ns, recover_confirm=f"{ns}/{name}@{early}")
        refused = tenants.eventually(
            lambda: "recoverability window" in (
                r := _recovery(real_cluster, name, ns)).get("message", "") and r,
            timeout=60, interval=1)
        assert refused["phase"] == "Refused", refused
        assert window["firstPoint"].rstrip("Z") in refused["message"], (refused, window)
        assert _app_replicas(real_cluster, ns) == 1

        stack.psql(real_cluster, ns, "CREATE ROLE reporting NOLOGIN;")
        stack.psql(real_cluster, ns,
                   "CREATE TABLE journal (id int PRIMARY KEY);"
                   "CREATE TABLE treasure (id int);"
                   "INSERT INTO treasure SELECT generate_series(1, 7);"
                   "INSERT INTO journal SELECT generate_series(1, 20);", as_app=True)
        stack.psql(real_cluster, ns, "GRANT SELECT ON treasure TO reporting;", as_app=True)
        owned = stack.psql(real_cluster, ns, stack.OWNERSHIP_SQL)
        assert "reporting=r/" in owned, owned
        time.sleep(1.2)
        target = stack.psql(real_cluster, ns, "SELECT to_char(clock_timestamp() AT TIME ZONE "
                                              "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        time.sleep(1.2)
        stack.psql(real_cluster, ns, "INSERT INTO journal SELECT generate_series(21, 40);")
        time.sleep(max(0.0, (runs.parse_time(target) + timedelta(seconds=10)
                             - datetime.now(UTC)).total_seconds()))
        stack.psql(real_cluster, ns, "DROP TABLE treasure;")

        # A verification that fails: rolled back onto the old database.
        runs.apply(real_cluster, _checks_drill("verify-wrong", name, ns, [
            {"name": "treasure", "expectedValue": "8", "sql": "SELECT count(*) FROM treasure"}]))
        runs.apply(real_cluster, _checks_drill("verify-right", name, ns, [
            {"name": "treasure", "expectedValue": "7", "sql": "SELECT count(*) FROM treasure"},
            {"name": "journal", "expectedValue": "20", "sql": "SELECT count(*) FROM journal"}]))
        _annotate(real_cluster, name, ns, recover_to=target,
                  recover_confirm=f"{ns}/{name}@{target}", recover_verify_drill="verify-wrong")
        seen_apps: set[int] = set()
        failed = _recovered(real_cluster, name, ns, "Failed", seen_apps)
        assert [s["name"] for s in failed["steps"]] == [
            "StopWrites", "Restore", "Verify", "RollBack"], failed
        assert "the verification failed" in failed["message"], failed
        assert seen_apps == {0}, seen_apps
        # The failed restore's volume is kept (the operator never deletes one).
        assert failed["keptVolumes"] == ["data-postgres-1"], failed
        core = client.CoreV1Api(real_cluster.api)
        # Failed once the old database runs on its own template again: archiving on,
        # its archiver beside it. (Not the restore's template, which has no archiving:
        # the StatefulSet controller once made the old pod from it first, and WAL it
        # wrote then could be recycled unarchived.)
        old_primary = core.read_namespaced_pod("postgres-0", ns)
        assert old_primary.spec is not None
        assert "archiver" in {c.name for c in old_primary.spec.containers}, old_primary.spec

        def claims() -> set[str]:
            return {name_of(c) for c in core.list_namespaced_persistent_volume_claim(ns).items}

        assert {"data-postgres-0", "data-postgres-1"} <= claims()
        # The claim it ended on is marked: a tenant made again over them adopts it.
        assert _serving_mark(core, ns, "data-postgres-0") == (failed["startTime"], target)
        assert _serving_mark(core, ns, "data-postgres-1") == (None, None)
        stack.wait_ready(real_cluster, name)
        assert stack.psql(real_cluster, ns, "SELECT to_regclass('treasure') IS NULL") == "t"
        assert stack.psql(real_cluster, ns, "SELECT count(*) FROM journal") == "40"
        assert _app_replicas(real_cluster, ns) == 1

        # The same moment, verified by the right checks: recovered in place.
        _annotate(real_cluster, name, ns, recover_verify_drill="verify-right")
        seen_apps.clear()
        done = _recovered(real_cluster, name, ns, "Succeeded", seen_apps)
        assert [s["name"] for s in done["steps"]] == [
            "StopWrites", "Restore", "Verify", "SwitchOver"], done
        times = [runs.parse_time(t) for s in done["steps"]
                 for t in (s["startTime"], s["completionTime"])]
        assert times == sorted(times), done["steps"]
        assert runs.parse_time(done["recoveryTarget"]) == runs.parse_time(target), done
        # Pod numbers only grow: the kept data-postgres-1 is never restored over.
        assert done["previousOrdinal"] == 0 and done["ordinal"] == 2, done
        assert done["keptVolumes"] == ["data-postgres-1", "data-postgres-0"], done
        assert seen_apps == {0}, seen_apps
        stack.wait_ready(real_cluster, name)
        tenants.eventually(lambda: _app_replicas(real_cluster, ns) == 1, timeout=60, interval=1)
        restored = functools.partial(stack.psql, real_cluster, ns, pod="postgres-2")
        assert restored("SELECT count(*) || ':' || max(id) FROM treasure") == "7:7"
        assert restored("SELECT count(*) FROM journal") == "20"
        assert restored(stack.OWNERSHIP_SQL) == owned
        assert {"data-postgres-0", "data-postgres-1"} <= claims()
        assert _serving_mark(core, ns, "data-postgres-2") == (done["startTime"], target)
        assert runs.parse_time(done["startTime"]) > runs.parse_time(failed["startTime"])

        # A person deletes the kept volumes; the recovery's record forgets them.
        real_cluster.kubectl("delete", "pvc", "-n", ns, "data-postgres-0", "data-postgres-1",
                             "--wait=false")
        tenants.eventually(lambda: _recovery(real_cluster, name, ns)["keptVolumes"] == [],
                           timeout=120, interval=1)
    finally:
        for drill in drills:
            real_cluster.kubectl("delete", "drdrills.stackforge.io", drill, "-n", ns,
                                 "--ignore-not-found", "--wait=false")
