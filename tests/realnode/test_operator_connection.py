"""Chaos between the operator and the API server on the real node (issue #17, case 3,
with data): the operator's every connection goes through a fault proxy
(tests/support/fault_proxy.py) while a tenant's application writes all along.

2 s of latency: the app scaled then is still carried out. Connections reset every
2 s: a backup asked meanwhile runs once, as one Job with one pod, on the node, and its
dump holds every seeded row. A 60 s black hole: the operator neither exits nor acts
on what it cannot see (the app scaled meanwhile stays as it was), and carries it out
once the connection is back. Through all of it the tenant's database keeps every
acknowledged write and its seeded rows, and none of its containers restarts: the
operator's connection is no part of the data path. (Notifications sent once per
incident through the same faults, with five tenants, are in
tests/chaos/test_operator_connection.py on kwok nodes.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from stackforge_operator.builders.backup import cron_job_name, manual_job_name
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.realnode import journal, pods, runs, stack
from tests.realnode.operators import operator_running
from tests.support import children, operator_identity, tenants
from tests.support.clusters import ClusterHandle
from tests.support.fault_proxy import (
    BLACK_HOLE_SECONDS,
    LATENCY_SECONDS,
    RESET_EVERY_SECONDS,
    FaultProxy,
    kubeconfig_through,
    upstream_of,
)
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.chaos

POLICY = "nightly"
BACKUP_REQUEST = "during-resets"


@pytest.fixture
def proxy(real_cluster: ClusterHandle) -> Iterator[FaultProxy]:
    local = real_cluster.local
    assert local is not None
    with FaultProxy(*upstream_of(local.server)) as running:
        yield running


@pytest.fixture
def operator_through_proxy(
        real_operator_identity: operator_identity.OperatorIdentity, proxy: FaultProxy,
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    kubeconfig = kubeconfig_through(real_operator_identity.kubeconfig, proxy,
                                    tmp_path / "operator.kubeconfig")
    with operator_running(real_operator_identity, tmp_path_factory,
                          kubeconfig=kubeconfig) as process:
        yield process


def _scaled(cluster: ClusterHandle, name: str, replicas: int, timeout: float) -> None:
    namespace = tenants.namespace_of(name)
    try:
        tenants.eventually(lambda: stack.app_pods(cluster, namespace) == (replicas, replicas),
                           timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(f"the app is not at {replicas} pods: (asked, ready) "
                             f"{stack.app_pods(cluster, namespace)}"
                             f"{stack.diagnosis(cluster, namespace)}") from None


def test_the_operator_rides_out_a_slow_a_resetting_and_a_silent_connection_losing_nothing(
        real_cluster: ClusterHandle, pod_s3: S3Server, proxy: FaultProxy,
        operator_through_proxy: OperatorProcess,
        record_property: Callable[[str, object], None]) -> None:
    cluster = real_cluster
    name = f"link-{uuid.uuid4().hex[:5]}"
    ns = tenants.namespace_of(name)
    try:
        tenants.apply(cluster, stack.postgres_and_app(name, 1))
        stack.wait_ready(cluster, name)
        stack.psql(cluster, ns, stack.SEED_SQL + journal.JOURNAL_SQL + ";", as_app=True)
        seeded = stack.psql(cluster, ns, stack.ORDERS_CHECKSUM_SQL)
        pods.apply(cluster, *journal.writer(ns, name))
        pods.wait_ready(cluster, ns, journal.WRITER)
        tenants.eventually(lambda: len(journal.acknowledged(cluster, ns)) >= 3, timeout=30)
        runs.put_s3_secrets(cluster, ns, pod_s3)
        tenant = runs.Tenant(name, ns, pod_s3.create_bucket())
        runs.apply(cluster, runs.policy_manifest(POLICY, tenant, pod_s3.endpoint))
        before = pods.containers_of(cluster, ns)
        assert {"postgres-0", journal.WRITER} < set(before), before

        # Slow: every answer and watch event 2 s late; a change is still carried out.
        proxy.latency(LATENCY_SECONDS)
        started = time.monotonic()
        tenants.apply(cluster, stack.postgres_and_app(name, 2))
        _scaled(cluster, name, 2, timeout=180)
        slow = time.monotonic() - started
        proxy.latency(0)

        # Reset over and over: a backup asked meanwhile runs once, on the node.
        with proxy.resets_every(RESET_EVERY_SECONDS, lasting=300) as resets:
            runs.ask_backup(cluster, ns, POLICY, BACKUP_REQUEST)
            ran = runs.backup_ran(cluster, ns, POLICY, BACKUP_REQUEST, timeout=240)
            time.sleep(3 * RESET_EVERY_SECONDS)  # resyncs and resets go on
        assert sum(resets) > 0, resets
        assert ran.returncode == 0, ran.termination_message + runs.explain(cluster, ns)
        manifest = runs.backup_manifest(pod_s3, tenant.bucket, name, ran.outcome()["runId"])
        counts = manifest["postgres"]["rowCounts"]
        assert {t: counts.get(t) for t in runs.SEEDED} == runs.SEEDED, counts

        # Silent for 60 s while the app is scaled behind its back.
        proxy.black_hole(True)
        tenants.apply(cluster, stack.postgres_and_app(name, 3))
        time.sleep(BLACK_HOLE_SECONDS)
        assert operator_through_proxy.process.running(), \
            operator_through_proxy.process.log_tail()
        assert stack.app_pods(cluster, ns)[0] == 2, "the operator acted on what it could not see"
        proxy.black_hole(False)
        lifted = time.monotonic()
        _scaled(cluster, name, 3, timeout=180)
        recovered = time.monotonic() - lifted
        stack.wait_ready(cluster, name, timeout=180)
        assert operator_through_proxy.process.running(), \
            operator_through_proxy.process.log_tail()

        # Nothing lost, nothing restarted, nothing doubled.
        after = pods.containers_of(cluster, ns)
        kept = ("postgres-0", journal.WRITER)
        assert {pod: after.get(pod) for pod in kept} == {pod: before[pod] for pod in kept}
        acknowledged = journal.acknowledged(cluster, ns)
        stored = {int(row) for row in stack.psql(
            cluster, ns, "SELECT id FROM shop.journal").split()}
        assert acknowledged and acknowledged <= stored, sorted(acknowledged - stored)
        assert stack.psql(cluster, ns, stack.ORDERS_CHECKSUM_SQL) == seeded
        assert children.problems(cluster, stack.postgres_and_app(name, 3)) == []
        jobs, crons = children.policy_jobs(cluster, ns, POLICY)
        assert [j.metadata.name for j in jobs] == [manual_job_name(POLICY, BACKUP_REQUEST)]
        assert crons == [cron_job_name(POLICY)]
        job_pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
            ns, label_selector=f"job-name={jobs[0].metadata.name}").items
        assert (jobs[0].status.succeeded, len(job_pods)) == (1, 1)
        record_property("chaos", f"the app scaled through {LATENCY_SECONDS:.0f} s of latency "
                                 f"in {slow:.1f} s; a backup asked while {sum(resets)} "
                                 f"connections were reset over {len(resets)} rounds ran once "
                                 f"and holds every seeded row; after a {BLACK_HOLE_SECONDS} s "
                                 f"black hole, carried out in {recovered:.1f} s; "
                                 f"{len(acknowledged)} writes acknowledged, all stored; "
                                 "no container restarted")
    finally:
        tenants.discard(cluster, name)
