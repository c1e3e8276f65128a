"""`kubectl stackforge` on running pods (issue #19): the runbook's health checks
against a live PostgreSQL, Redis and app (and a failing one), psql in the tenant's
database, its exit code on failing SQL, a support bundle with the pods' real logs
and no Secret value, and the evidence bundle the operator writes to the tenant's
bucket when it is isolated, and the tenant's usage: volume figures from the
kubelet, and CPU and memory once metrics-server serves the metrics API (the commands
without running pods:
tests/cluster/test_plugin.py; Kafka's health: test_kafka.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.utils import parse_quantity

from stackforge_operator import rbac
from stackforge_operator import support_bundle as bundle
from stackforge_operator.builders.common import APP_LABEL, TENANT_LABEL
from stackforge_operator.devcluster.dev_overlay import REDIS_VERSION_ON_NODE
from stackforge_operator.devcluster.node import metrics_server
from stackforge_operator.devcluster.node.services import TESTAPP_IMAGE
from stackforge_operator.devcluster.node.storage import SIZED_STORAGE_CLASS
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.devcluster.s3server import S3Server
from tests.realnode import runs, stack
from tests.realnode.operators import operator_running
from tests.support import operator_identity, plugin_user, tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import spec_of, status_of
from tests.support.plugin_cli import plugin


@pytest.fixture(scope="module")
def real_operator(real_operator_identity: operator_identity.OperatorIdentity,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator, reading a tenant's usage at every reconcile (not every 5 minutes)
    and a kubelet's statistics again after 2 s (not 60)."""
    with operator_running(real_operator_identity, tmp_path_factory,
                          STACKFORGE_USAGE_REFRESH_SECONDS="0",
                          STACKFORGE_KUBELET_STATS_SECONDS="2") as process:
        yield process


@pytest.fixture(scope="module")
def tenant(real_cluster: ClusterHandle, real_operator: OperatorProcess) -> Iterator[str]:
    name = f"cli-{uuid.uuid4().hex[:5]}"
    manifest = stack.postgres_only(name)
    # A volume of its own size (a tmpfs), so that the kubelet's figures are the
    # database's, not the shared disk's.
    manifest["spec"]["components"]["postgres"]["storageClassName"] = SIZED_STORAGE_CLASS
    manifest["spec"]["components"] |= {
        "redis": {"enabled": True, "version": REDIS_VERSION_ON_NODE, "storage": "1Gi"},
        "apps": [{"name": "api", "image": TESTAPP_IMAGE, "port": 8080, "replicas": 1,
                  "healthCheckPath": "/healthz", "env": {"PORT": "8080"}}]}
    tenants.apply(real_cluster, manifest)
    try:
        stack.wait_ready(real_cluster, name)
        yield name
    finally:
        tenants.discard(real_cluster, name)


def test_usage_figures_in_status_on_running_pods(real_cluster: ClusterHandle,
                                                tenant: str) -> None:
    """#19 item 5: requested vs quota from the namespace's ResourceQuota (the API
    server's count of the running pods' requests), used unknown while the cluster
    serves no metrics API (metrics-server comes in the next test) and said so;
    the plugin shows them."""
    ns = tenants.namespace_of(tenant)
    core = client.CoreV1Api(real_cluster.api)

    def agreed() -> tuple[dict[str, Any], Any] | None:
        quota = status_of(core.read_namespaced_resource_quota("tenant-quota", ns))
        usage = ((tenants.get(real_cluster, tenant) or {}).get("status") or {}).get("usage")
        if not usage or not quota.used:
            return None
        assert quota.hard is not None  # counted against it: the quota controller sets both
        same = all(usage[r].get("requested") == quota.used.get(k) and
                   usage[r].get("quota") == quota.hard.get(k)
                   for r, k in (("cpu", "requests.cpu"), ("memory", "requests.memory"),
                                ("storage", "requests.storage"), ("pods", "pods")))
        return (usage, quota) if same else None

    usage, quota = tenants.eventually(agreed, timeout=90, interval=1)
    running = [p for p in core.list_namespaced_pod(ns).items
               if status_of(p).phase in ("Pending", "Running")]
    assert usage["pods"]["requested"] == str(len(running))
    assert usage["cpu"]["requested"] not in (None, "0")  # the primary's own request
    assert "used" not in usage["cpu"] and "no metrics API" in usage["unmeasured"]
    shown = plugin(real_cluster, "status", tenant)
    assert (f"  cpu: {usage['cpu']['requested']} / {quota.hard['requests.cpu']} / -"
            in shown.stdout), shown.stdout
    every = plugin(real_cluster, "status")
    [row] = [line.split() for line in every.stdout.splitlines()
             if line.split()[:2] == [ns, tenant]]
    assert f"{usage['cpu']['requested']}/{quota.hard['requests.cpu']}/-" in row


def _volumes(cluster: ClusterHandle, tenant: str) -> dict[str, Any] | None:
    usage = ((tenants.get(cluster, tenant) or {}).get("status") or {}).get("usage") or {}
    return usage if usage.get("volumesMeasuredBy") == "kubelet" else None


def test_volume_use_in_status_from_the_kubelet_and_growing_with_the_data(
        real_cluster: ClusterHandle, tenant: str) -> None:
    """#19 item 5: what the tenant's volumes hold, per claim and summed, from the
    kubelet's statistics (read by the operator with a token of the kubelet reader,
    its own account having no nodes/stats: the next test); rows written show up
    in the database volume's figure."""
    ns = tenants.namespace_of(tenant)

    def initialised() -> dict[str, Any] | None:
        # The kubelet samples a volume every volumeStatsAggPeriod (10 s here), so
        # its first figure may be from before initdb wrote: wait for one of an
        # initialised PostgreSQL cluster (some 40 MiB), not merely for any figure.
        usage = _volumes(real_cluster, tenant)
        used = {v["claim"]: v["used"] for v in (usage or {}).get("volumes") or []}
        return usage if int(used.get("data-postgres-0", "0Mi").removesuffix("Mi")) >= 10 \
            else None

    try:
        usage = tenants.eventually(initialised, timeout=90, interval=1)
    except AssertionError:
        status = (tenants.get(real_cluster, tenant) or {}).get("status") or {}
        raise AssertionError(f"no volume figures of an initialised cluster: "
                             f"{status.get('usage')}") from None
    claims = {v["claim"]: v for v in usage["volumes"]}
    database = claims["data-postgres-0"]
    # The sized volume is a tmpfs of the claim's size: its capacity is the claim's.
    assert database["capacity"] == "1024Mi", claims
    before = int(database["used"].removesuffix("Mi"))
    # The total is the bytes' sum rounded up once; each claim's figure is rounded
    # up on its own, so their sum may be up to a MiB per further claim more.
    rounded = sum(int(v["used"].removesuffix("Mi")) for v in claims.values())
    total = int(usage["storage"]["used"].removesuffix("Mi"))
    assert rounded - (len(claims) - 1) <= total <= rounded, (total, claims)
    assert "volumesUnmeasured" not in usage
    stack.psql(real_cluster, ns, "CREATE TABLE ballast AS SELECT g, repeat('x', 1000) AS pad "
               "FROM generate_series(1, 40000) AS g; CHECKPOINT")

    def grown() -> int | None:
        now = _volumes(real_cluster, tenant)
        used = {v["claim"]: int(v["used"].removesuffix("Mi"))
                for v in (now or {}).get("volumes") or []}
        return used.get("data-postgres-0") if used.get("data-postgres-0", 0) >= before + 30 \
            else None

    # 40,000 rows of 1 kB: 40 MiB of table (and as much WAL) more.
    tenants.eventually(grown, timeout=90, interval=2)
    shown = plugin(real_cluster, "status", tenant)
    assert f"  storage: {usage['storage']['requested']} / {usage['storage']['quota']} / " \
        in shown.stdout, shown.stdout


def test_the_kubelet_serves_the_readers_token_and_refuses_the_operators(
        real_cluster: ClusterHandle, real_operator_identity: operator_identity.OperatorIdentity,
        tenant: str) -> None:
    """A token sent to a kubelet is its node's from then on: the operator's own
    (Secrets and workloads everywhere) is refused there, so the figures of the
    test before came with the reader's, which may read node statistics only."""
    core = client.CoreV1Api(real_cluster.api)
    pod = core.read_namespaced_pod("postgres-0", tenants.namespace_of(tenant))
    node_name = str(spec_of(pod).node_name)
    node: dict[str, Any] = client.ApiClient().sanitize_for_serialization(
        core.read_node(node_name))["status"]
    address = next(a["address"] for a in node["addresses"] if a["type"] == "InternalIP")
    url = f"https://{address}:{node['daemonEndpoints']['kubeletEndpoint']['Port']}/stats/summary"
    reader = real_cluster.service_account_token(real_operator_identity.namespace,
                                                rbac.KUBELET_READER)
    # The kubelet's serving certificate is the cluster CA's, as the operator checks it.
    tls = ssl.create_default_context(cafile=real_cluster.api.configuration.ssl_ca_cert)

    def asked(token: str) -> httpx.Response:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, verify=tls,
                         timeout=10)

    own = asked(real_operator_identity.token)
    assert own.status_code == 403, (own.status_code, own.text[:200])
    # The kubelet's own refusal (its authorizer asked the API server), naming who.
    assert real_operator_identity.username in own.text and "stats" in own.text, own.text
    served = asked(reader)
    assert served.status_code == 200, (served.status_code, served.text[:200])
    assert served.json()["node"]["nodeName"] == node_name
    # The reader's token opens nothing else there: a pod's logs (nodes/proxy).
    logs = httpx.get(f"{url.removesuffix('/stats/summary')}/containerLogs/"
                     f"{tenants.namespace_of(tenant)}/postgres-0/postgres",
                     headers={"Authorization": f"Bearer {reader}"}, verify=tls, timeout=10)
    assert logs.status_code == 403, (logs.status_code, logs.text[:200])


@pytest.fixture
def metrics_api(real_cluster: ClusterHandle) -> Iterator[None]:
    """metrics-server on the node for one test; removed after it, so no later
    test depends on an aggregated API (devcluster/node/metrics_server.py)."""
    assert real_cluster.local is not None
    try:
        metrics_server.install(real_cluster.local)
        yield
    finally:
        metrics_server.remove(real_cluster.local)


def _metrics_api_memory_mib(cluster: ClusterHandle, namespace: str) -> float:
    """The namespace's pods' memory now, summed from the metrics API itself."""
    listed = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", namespace, "pods")
    assert isinstance(listed, dict)  # the client types a custom object list as a bare object
    return sum(float(parse_quantity(c["usage"]["memory"])) for pod in listed["items"]
               for c in pod["containers"]) / 2**20


def test_measured_use_in_status_once_the_cluster_serves_the_metrics_api(
        real_cluster: ClusterHandle, real_operator: OperatorProcess, tenant: str,
        metrics_api: None) -> None:
    """#19 item 5 on the real node: with metrics-server scraping the kubelet, the
    tenant's status says what its running pods use (the APIService's arrival
    wakes the settled tenant), near what the metrics API itself says; the
    plugin and the operator's metrics show it."""
    ns = tenants.namespace_of(tenant)

    def measured() -> dict[str, Any] | None:
        usage = ((tenants.get(real_cluster, tenant) or {}).get("status") or {}).get("usage")
        return usage if usage and usage.get("measuredBy") == "metrics.k8s.io" else None

    usage = tenants.eventually(measured, timeout=90, interval=1)
    assert "unmeasured" not in usage, usage
    cpu, memory = usage["cpu"]["used"], usage["memory"]["used"]
    assert re.fullmatch(r"[1-9][0-9]*m", cpu), usage
    assert re.fullmatch(r"[1-9][0-9]*Mi", memory), usage
    # PostgreSQL, Redis and the app each hold a few MiB at least; and the figure
    # is the metrics API's sum for this namespace (working sets move a little
    # between scrapes, not by half).
    memory_mib = int(memory.removesuffix("Mi"))
    assert memory_mib >= 10, usage
    now = _metrics_api_memory_mib(real_cluster, ns)
    assert now / 2 <= memory_mib <= now * 2, (usage, now)
    shown = plugin(real_cluster, "status", tenant)
    assert (f"  memory: {usage['memory']['requested']} / {usage['memory']['quota']} / "
            in shown.stdout), shown.stdout
    assert "no metrics API" not in shown.stdout
    every = plugin(real_cluster, "status")
    [row] = [line.split() for line in every.stdout.splitlines()
             if line.split()[:2] == [ns, tenant]]
    assert any(re.fullmatch(rf"{re.escape(usage['cpu']['requested'])}/[^/]+/[1-9][0-9]*m", c)
               for c in row), row
    exported = httpx.get(real_operator.metrics_url, timeout=5).text
    used_bytes = [float(line.rsplit(" ", 1)[1]) for line in exported.splitlines()
                  if line.startswith("stackforge_tenant_resources{")
                  and f'tenant="{tenant}"' in line and 'resource="memory"' in line
                  and 'figure="used"' in line]
    assert used_bytes and used_bytes[0] >= 10 * 2**20, used_bytes


def test_psql_runs_sql_in_the_tenants_database_and_fails_with_it(
        real_cluster: ClusterHandle, tenant: str) -> None:
    made = plugin(real_cluster, "psql", tenant, "-c",
                  "CREATE TABLE cli_rows AS SELECT generate_series(1, 42) AS n")
    assert made.returncode == 0, made.stderr
    counted = plugin(real_cluster, "psql", tenant, "-c",
                     "SELECT current_database() || ':' || count(*) FROM cli_rows")
    assert counted.returncode == 0, counted.stderr
    assert f"{stack.DATABASE}:42" in counted.stdout
    # The rows are in the database itself, as the tests' own psql sees it.
    assert stack.psql(real_cluster, tenants.namespace_of(tenant),
                      "SELECT count(*) FROM cli_rows") == "42"
    failed = plugin(real_cluster, "psql", tenant, "-c", "SELECT * FROM no_such_table")
    assert failed.returncode == 1
    assert 'relation "no_such_table" does not exist' in failed.stderr
    no_replica = plugin(real_cluster, "psql", tenant, "--replica", "-c", "SELECT 1")
    assert no_replica.returncode == 1
    assert f"no running postgres-replica pod of tenant {tenant}" in no_replica.stderr


def _health(cluster: ClusterHandle, tenant: str) -> tuple[int, dict[tuple[str, str], Any]]:
    """The exit code and the rows of ``health -o json`` by (component, check)."""
    ran = plugin(cluster, "health", tenant, "-o", "json")
    rows = {(c["component"], c["check"]): c for c in json.loads(ran.stdout)["checks"]}
    return ran.returncode, rows


def test_health_runs_the_runbooks_checks_on_the_live_stack_and_fails_with_it(
        real_cluster: ClusterHandle, tenant: str, tmp_path: Path) -> None:
    """#19 item 1: pg_isready and connections vs max in the primary, redis-cli ping
    in Redis, the app's health path on its own port; Kong, at zero replicas here,
    said and skipped. Redis paused stops answering: the check fails, so does the
    command, and it passes again once Redis answers."""
    code, rows = _health(real_cluster, tenant)
    assert code == 0, rows
    assert rows[("postgres", "pods")]["detail"] == "1/1 ready"
    assert rows[("postgres", "ready")]["target"] == "postgres-0"
    assert "accepting connections" in rows[("postgres", "ready")]["detail"]
    connections = rows[("postgres", "connections")]
    assert connections["result"] == "ok" and "/100 client connections" in connections["detail"]
    assert (rows[("redis", "ping")]["result"], rows[("redis", "ping")]["detail"]) == ("ok", "PONG")
    assert rows[("kong", "pods")]["result"] == "skipped"
    probe = rows[("app/api", "GET /healthz")]
    assert (probe["result"], probe["detail"]) == ("ok", "HTTP 200: ok")
    assert probe["target"].startswith("api-")
    text = plugin(real_cluster, "health", tenant)
    assert text.returncode == 0 and text.stdout.splitlines()[-1].endswith("all passed")
    assert "\033[" not in text.stdout  # no colour when not on a terminal
    # The shipped roles of the plugin's users are enough: the user's cluster-wide
    # opens no shell (bound so, it reached every pod of the cluster, the operator's
    # own with its token among them); the shell's, bound in the tenant's namespace,
    # runs exec and port-forward there.
    reader = plugin_user.install(real_cluster, tmp_path / "reader.kubeconfig", "reader")
    refused = plugin(real_cluster, "psql", tenant, "-c", "SELECT 1", kubeconfig=reader)
    assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
    oncall = plugin_user.install(real_cluster, tmp_path / "oncall.kubeconfig",
                                 shell_in=[tenants.namespace_of(tenant)])
    as_oncall = plugin(real_cluster, "health", tenant, kubeconfig=oncall)
    assert as_oncall.returncode == 0, as_oncall.stdout + as_oncall.stderr
    # The same checks as the admin's run, each passing.
    assert as_oncall.stdout.splitlines()[-1] == text.stdout.splitlines()[-1]
    psql = plugin(real_cluster, "psql", tenant, "-c", "SELECT 41 + 1", kubeconfig=oncall)
    assert psql.returncode == 0 and "42" in psql.stdout, psql.stderr

    ns = tenants.namespace_of(tenant)
    # Every client command waits while Redis is paused; the check gives up after 15 s.
    # Paused for a minute: the checks before Redis's (kubectl execs) took more
    # than 30 s on a slow day, and found Redis answering again.
    paused = real_cluster.kubectl("exec", "-n", ns, "redis-0", "-c", "redis", "--",
                                  "redis-cli", "client", "pause", "60000", "ALL")
    assert paused.stdout.strip() == "OK", paused.stderr
    failing = plugin(real_cluster, "health", tenant)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    [row] = [line for line in failing.stdout.splitlines() if line.startswith("redis ")
             and " ping " in line]
    assert " FAIL " in row and "no answer within 15 s" in row, failing.stdout
    assert failing.stdout.splitlines()[-1].endswith("1 failed"), failing.stdout
    tenants.eventually(lambda: _health(real_cluster, tenant)[0] == 0 or None,
                       timeout=150, interval=2)
    missing = plugin(real_cluster, "health", "no-such-tenant")
    assert missing.returncode == 1 and "no StackForgeTenant no-such-tenant" in missing.stderr


def test_the_report_has_the_running_pods_logs_and_no_secret_value(
        real_cluster: ClusterHandle, tenant: str, tmp_path: Path) -> None:
    out = tmp_path / "bundle.tar.gz"
    ran = plugin(real_cluster, "report", tenant, "-f", str(out), "--tail", "500")
    assert ran.returncode == 0, ran.stderr
    files = bundle.verify(out.read_bytes())
    log = files["logs/postgres-0/postgres.log"].decode()
    assert "database system is ready to accept connections" in log
    ns = tenants.namespace_of(tenant)
    secrets = client.CoreV1Api(real_cluster.api).list_namespaced_secret(ns).items
    values = {base64.b64decode(v).decode(errors="replace")
              for s in secrets for v in (s.data or {}).values()}
    values = {v for v in values if len(v) >= 8}
    assert values
    everything = b"".join(files.values()).decode(errors="replace")
    assert not [v[:4] for v in values if v in everything]


@pytest.fixture(scope="module")
def bucket(real_cluster: ClusterHandle, tenant: str, pod_s3: S3Server) -> str:
    """The tenant's BackupPolicy "nightly" and its bucket; its dumps zstd (#18), so the
    backup Job and the drill here run that path in the operator's image (gzip ones:
    test_backup_runs.py, test_drill_runs.py)."""
    ns = tenants.namespace_of(tenant)
    created = pod_s3.create_bucket()
    runs.put_s3_secrets(real_cluster, ns, pod_s3)
    runs.apply(real_cluster, runs.policy_manifest("nightly", runs.Tenant(tenant, ns, created),
                                                  pod_s3.endpoint, dumpCompression="Zstd"))
    # The backup reads as the app's owner: the superuser's table of the psql test too.
    owner = runs.app_owner(real_cluster, ns)
    stack.psql(real_cluster, ns, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{owner}"')
    return created


def test_isolating_the_tenant_writes_an_evidence_bundle_to_its_bucket(
        real_cluster: ClusterHandle, tenant: str, bucket: str, pod_s3: S3Server) -> None:
    """#19 item 3: the runbook's security incident, "isolate", then "capture logs and
    evidence": the operator writes the bundle to the tenant's backup bucket, with its
    sha256, and says where in the status."""
    ns = tenants.namespace_of(tenant)
    backed_up = plugin(real_cluster, "backup", tenant, "--wait", "--timeout", "300")
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    assert "succeeded (Job " in backed_up.stdout
    core = client.CoreV1Api(real_cluster.api)
    app_pods = f"{APP_LABEL}=api,{TENANT_LABEL}={tenant}"

    def serving_app_pods() -> dict[str, str]:
        """uid -> name of the app's pods not on their way out."""
        return {str(p.metadata.uid): str(p.metadata.name)
                for p in core.list_namespaced_pod(ns, label_selector=app_pods).items
                if p.metadata is not None and p.metadata.deletion_timestamp is None}

    before = serving_app_pods()
    assert before
    try:
        assert plugin(real_cluster, "isolate", tenant).returncode == 0
        tenants.wait_condition(real_cluster, tenant, "Isolated", "True")

        def captured() -> dict[str, Any] | None:
            found = ((tenants.get(real_cluster, tenant) or {}).get("status") or {}).get(
                "evidence") or {}
            return found if found.get("location") else None

        evidence = tenants.eventually(captured, timeout=120, interval=1)
        prefix = f"s3://{bucket}/backups/evidence/{tenant}/evidence-{tenant}-"
        assert evidence["location"].startswith(prefix) and evidence["location"].endswith(
            ".tar.gz"), evidence
        key = evidence["location"].removeprefix(f"s3://{bucket}/")
        s3 = pod_s3.client()
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == evidence["sha256"]
        beside = s3.get_object(Bucket=bucket, Key=f"{key}.sha256")["Body"].read().decode()
        assert beside.split()[0] == evidence["sha256"]
        files = bundle.verify(data)
        assert len(files) == evidence["files"]
        assert "database system is ready to accept connections" in files[
            "logs/postgres-0/postgres.log"].decode()
        assert f"objects/StackForgeTenant/{tenant}.yaml" in files
        assert "objects/NetworkPolicy/default-deny.yaml" in files and "events.yaml" in files
        # The app's pods made before the isolation go (sessions they held with
        # them), after the bundle took their logs; their Deployment makes new ones.
        assert any(name.split("/")[1] in before.values()
                   for name in files if name.startswith("logs/")), sorted(files)
        tenants.eventually(lambda: not set(serving_app_pods()) & set(before), timeout=60)
        secrets = client.CoreV1Api(real_cluster.api).list_namespaced_secret(ns).items
        values = {base64.b64decode(v).decode(errors="replace")
                  for s in secrets for v in (s.data or {}).values()}
        values = {v for v in values if len(v) >= 8}
        everything = b"".join(files.values()).decode(errors="replace")
        assert values and not [v[:4] for v in values if v in everything]
        # Once per isolation: resyncs while isolated write nothing more.
        time.sleep(8)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"backups/evidence/{tenant}/")
        assert len(listed.get("Contents", [])) == 2  # the bundle and its .sha256
    finally:
        plugin(real_cluster, "unisolate", tenant)
        tenants.wait_condition(real_cluster, tenant, "Isolated", "False")


def test_a_drill_now_waits_for_its_verdict_and_exits_1_unless_it_passed(
        real_cluster: ClusterHandle, tenant: str, bucket: str, pod_s3: S3Server) -> None:
    """``drill --from D --wait`` on running pods: the tenant's DRDrill copied and run
    once now, restoring the backup just taken into a sandbox and judging it; a drill
    whose check cannot pass exits 1 with its verdict."""
    ns = tenants.namespace_of(tenant)
    stack.psql(real_cluster, ns, "CREATE TABLE drill_rows AS SELECT generate_series(1, 7) AS n",
               as_app=True)
    assert plugin(real_cluster, "backup", tenant, "--wait", "--timeout", "300").returncode == 0
    owner = runs.Tenant(tenant, ns, bucket)
    # Scheduled once a year: only the plugin's copies run in this test.
    for name, expected in (("monthly", "7"), ("wrong", "8")):
        runs.apply(real_cluster, runs.drill_manifest(
            name, owner, once=False, schedule="0 3 1 1 *",
            checks={"queries": [{"name": "rows", "sql": "SELECT count(*) FROM drill_rows",
                                 "expectedValue": expected}]}))
    ambiguous = plugin(real_cluster, "drill", tenant)
    assert ambiguous.returncode == 1 and "name one with --from" in ambiguous.stderr

    passed = plugin(real_cluster, "drill", tenant, "--from", "monthly", "--wait",
                    "--timeout", "300", timeout=330)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    verdict = passed.stdout.splitlines()[-1]
    assert re.fullmatch(r"drill monthly-now-\d{14}: Passed, RTO \d+(\.\d+)? s, "
                        r"RPO \d+(\.\d+)? s", verdict), passed.stdout
    run = runs.finished_drill(real_cluster, ns, verdict.split()[1].rstrip(":"))
    assert run["status"]["lastResult"]["verdict"] == "Passed"
    # What it restored was the zstd dump the backup Job just wrote: the newest run's.
    listed = pod_s3.client().list_objects_v2(Bucket=bucket, Prefix=f"backups/{tenant}/")
    dumps = [o["Key"] for o in listed.get("Contents", []) if "/postgres.dump" in o["Key"]]
    assert dumps and all(key.endswith("/postgres.dump.zst") for key in dumps), dumps
    restored = run["status"]["lastResult"]["backupId"]
    assert f"backups/{tenant}/{restored}/postgres.dump.zst" == max(dumps), (restored, dumps)

    failed = plugin(real_cluster, "drill", tenant, "--from", "wrong", "--wait",
                    "--timeout", "300", timeout=330)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert failed.stdout.splitlines()[-1].split(": ", 1)[1].startswith("Failed")


def test_a_failed_backup_exits_1_with_the_runners_reason(
        real_cluster: ClusterHandle, tenant: str, bucket: str) -> None:
    """``backup --wait`` of a run that fails says why, as the runner said it: the Job's
    own message ("backoff limit") alone leaves a person to find its pod."""
    ns = tenants.namespace_of(tenant)
    # The superuser's table, not granted to the app's owner as whom the backup reads.
    stack.psql(real_cluster, ns, "CREATE TABLE locked_out (n int)")
    try:
        failed = plugin(real_cluster, "backup", tenant, "--wait", "--timeout", "300")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        why = "reached the specified backoff limit): DatabasePermissionDenied: "
        assert why in failed.stderr, failed.stderr
        assert "permission denied for table locked_out" in failed.stderr, failed.stderr
    finally:
        stack.psql(real_cluster, ns, "DROP TABLE locked_out")
