"""Dev-environment schedules on the real node (issue #19 item 4): a tenant with a
weeknight suspend window is scaled to zero when the window opens and brought back
when it closes, its rows intact, and its cost estimate shows the saving; its
nightly backup, inside the window, rests and is made up once the window closes.

The operator's suspend-window clock is moved by the test
(``STACKFORGE_TEST_CLOCK_FILE``, stackforge_operator/clock.py) to the window's
edges: the minutes are injected, not waited for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator import backup_catchup
from stackforge_operator.builders.backup import manual_job_name
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.devcluster.s3server import S3Server
from tests.realnode import runs, stack
from tests.realnode.operators import operator_running
from tests.support import operator_identity, tenants
from tests.support.clusters import ClusterHandle
from tests.support.objects import name_of

# Every weeknight from 20:00 to 07:00 in Berlin (UTC+1 in December).
WEEKNIGHTS = {"start": "0 20 * * 1-5", "end": "0 7 * * 1-5", "timeZone": "Europe/Berlin"}
# Tuesday 1 December 2026.
BEFORE = "2026-12-01T18:59:30+00:00"
OPENS = "2026-12-01T19:00:00+00:00"
LAST_SECOND = "2026-12-02T05:59:59+00:00"
CLOSES = "2026-12-02T06:00:00+00:00"


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "now"
    path.write_text(BEFORE)
    return path


@pytest.fixture(scope="module")
def real_operator(real_operator_identity: operator_identity.OperatorIdentity,
                  tmp_path_factory: pytest.TempPathFactory,
                  clock_file: Path) -> Iterator[OperatorProcess]:
    """The operator, its suspend windows reading the test's clock."""
    with operator_running(real_operator_identity, tmp_path_factory,
                          STACKFORGE_TEST_CLOCK_FILE=str(clock_file)) as process:
        yield process


def _status(cluster: ClusterHandle, name: str) -> dict[str, Any]:
    return (tenants.get(cluster, name) or {}).get("status") or {}


def _postgres_pods(cluster: ClusterHandle, namespace: str) -> list[str]:
    return [name_of(p) for p in client.CoreV1Api(cluster.api).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=postgres").items]


def _cron_suspended(cluster: ClusterHandle, namespace: str) -> bool | None:
    found = client.BatchV1Api(cluster.api).list_namespaced_cron_job(namespace).items
    return found[0].spec.suspend if found else None


def test_a_weeknight_window_suspends_the_tenant_and_resumes_it_with_its_rows(
        real_cluster: ClusterHandle, real_operator: OperatorProcess,
        clock_file: Path, pod_s3: S3Server) -> None:
    """And its nightly backup, which the window swallows: the CronJob rests while
    the database is stopped, and once the window has closed and the database is
    back, the operator starts the run it missed, which dumps the rows to S3."""
    name = f"dev-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    manifest = stack.postgres_only(name)
    manifest["spec"]["suspendWindows"] = [WEEKNIGHTS]
    tenants.apply(real_cluster, manifest)
    try:
        stack.wait_ready(real_cluster, name)
        # As the application's role, whose tables the backups dump.
        stack.psql(real_cluster, ns, "CREATE TABLE notes AS SELECT i, md5(i::text) AS body "
                                     "FROM generate_series(1, 1000) i", as_app=True)
        checksum_sql = "SELECT count(*) || ':' || md5(string_agg(body, ',' ORDER BY i)) FROM notes"
        written = stack.psql(real_cluster, ns, checksum_sql)
        before = _status(real_cluster, name)
        assert before["suspended"] is False
        assert before["suspendWindow"] == {"open": False, "nextChange": "2026-12-01T19:00:00Z"}
        # Weeknights: Monday-Thursday nights 11 h each, Friday 20:00 to Monday 07:00.
        cost = before["cost"]
        assert cost["suspendedShare"] == pytest.approx(103 / 168, abs=1e-4)
        assert float(cost["scheduledSavingMonthly"]) > 0

        # The window opens: scaled to zero, the volume kept.
        clock_file.write_text(OPENS)
        opened = time.monotonic()
        tenants.eventually(lambda: _status(real_cluster, name).get("suspended"), timeout=60)
        assert _status(real_cluster, name)["suspendWindow"] == {
            "open": True, "nextChange": "2026-12-02T06:00:00Z"}
        tenants.eventually(lambda: not _postgres_pods(real_cluster, ns), timeout=120)
        suspended_after = time.monotonic() - opened
        core = client.CoreV1Api(real_cluster.api)
        claim = core.read_namespaced_persistent_volume_claim("data-postgres-0", ns)
        assert claim.status is not None and claim.status.phase == "Bound"
        statefulset = client.AppsV1Api(real_cluster.api).read_namespaced_stateful_set(
            "postgres", ns)
        assert statefulset.spec.replicas == 0
        # A nightly backup at 02:00 Berlin, inside the window: resting, not failing.
        tenant = runs.Tenant(name, ns, pod_s3.create_bucket())
        runs.put_s3_secrets(real_cluster, ns, pod_s3)
        runs.apply(real_cluster, runs.policy_manifest(
            "nightly", tenant, pod_s3.endpoint, suspend=False, timeZone="Europe/Berlin"))
        tenants.eventually(lambda: _cron_suspended(real_cluster, ns), timeout=60)

        # Its last second: still suspended (the edge, not a resync, decides).
        clock_file.write_text(LAST_SECOND)
        time.sleep(8)  # a few resyncs
        assert _status(real_cluster, name)["suspended"] is True
        assert not _postgres_pods(real_cluster, ns)

        # The window closes: back, with every row.
        clock_file.write_text(CLOSES)
        closed = time.monotonic()
        tenants.eventually(lambda: _status(real_cluster, name).get("suspended") is False,
                           timeout=60)
        stack.wait_ready(real_cluster, name)
        resumed_after = time.monotonic() - closed
        assert stack.psql(real_cluster, ns, checksum_sql) == written
        assert _status(real_cluster, name)["suspendWindow"] == {
            "open": False, "nextChange": "2026-12-02T19:00:00Z"}
        # The run the window swallowed (Wednesday 01:00 UTC), made up now, once.
        missed = backup_catchup.request_for(datetime(2026, 12, 2, 1, tzinfo=UTC))
        ran = runs.backup_ran(real_cluster, ns, "nightly", missed)
        assert ran.returncode == 0, ran.termination_message + runs.explain(real_cluster, ns)
        manifest = runs.backup_manifest(pod_s3, tenant.bucket, name, ran.outcome()["runId"])
        assert manifest["postgres"]["rowCounts"]["public.notes"] == 1000, manifest
        tenants.eventually(lambda: _cron_suspended(real_cluster, ns) is False, timeout=60)
        tenants.eventually(lambda: (runs.get_policy(real_cluster, ns, "nightly").get(
            "status") or {}).get("lastRun", {}).get("result") == "Succeeded", timeout=60)
        jobs = client.BatchV1Api(real_cluster.api).list_namespaced_job(ns).items
        assert [name_of(j) for j in jobs] == [manual_job_name("nightly", missed)]
        print(f"suspended (no pod) {suspended_after:.1f} s after the window opened; "
              f"Ready {resumed_after:.1f} s after it closed")
    finally:
        tenants.discard(real_cluster, name)
