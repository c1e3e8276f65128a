"""Chaos between the operator and the API server (issue #17, case 3): its every
connection goes through a fault proxy (tests/support/fault_proxy.py) that adds
2 s of latency, then resets every connection every 2 s, then drops everything
for 60 s.

Slow, a change of the tenants' specs still converges. Reset over and over while the tenants are
isolated, each isolation is notified exactly once. Silenced while the isolation
is lifted, the operator neither exits nor acts on what it cannot see; once the
connection is back it converges, each lifted isolation is resolved exactly
once, and every child exists exactly once, owned by its tenant; a backup asked
while connections reset has one Job, its policy one CronJob.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import backup_requests, children, tenants
from tests.support.channels import Channels
from tests.support.clusters import ClusterHandle
from tests.support.fault_proxy import (
    BLACK_HOLE_SECONDS,
    LATENCY_SECONDS,
    RESET_EVERY_SECONDS,
    FaultProxy,
    kubeconfig_through,
    upstream_of,
)
from tests.support.operator_identity import OperatorIdentity
from tests.support.receiver import Receiver

pytestmark = pytest.mark.chaos

TENANTS = 5
POLICY = "nightly"
BACKUP_REQUEST = "during-resets"


@pytest.fixture
def proxy(faulty_cluster: tuple[LocalCluster, ClusterHandle, OperatorIdentity]
          ) -> Iterator[FaultProxy]:
    local, _, _ = faulty_cluster
    with FaultProxy(*upstream_of(local.server)) as running:
        yield running


def _scale_app(cluster: ClusterHandle, names: list[str], replicas: int) -> None:
    for name in names:
        app = {"name": "api", "image": "registry.example.com/shop/api:1.0.0", "port": 8080,
               "replicas": replicas}
        cluster.kubectl("patch", "stackforgetenants.stackforge.io", name, "-n",
                        tenants.namespace_of(name), "--type=merge", "-p",
                        json.dumps({"spec": {"components": {"apps": [app]}}}))


def _app_replicas(cluster: ClusterHandle, names: list[str]) -> set[int]:
    apps = client.AppsV1Api(cluster.api)
    return {int(apps.read_namespaced_deployment("api", tenants.namespace_of(n)).spec.replicas
                or 0) for n in names}


def _isolate(cluster: ClusterHandle, names: list[str], on: bool) -> None:
    for name in names:
        cluster.kubectl("patch", "stackforgetenants.stackforge.io", name, "-n",
                        tenants.namespace_of(name), "--type=merge", "-p",
                        f'{{"spec": {{"isolate": {str(on).lower()}}}}}')


def test_the_operator_rides_out_a_slow_a_resetting_and_a_silent_connection(
        faulty_cluster: tuple[LocalCluster, ClusterHandle, OperatorIdentity],
        proxy: FaultProxy, tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    _, cluster, identity = faulty_cluster
    names = [f"link-{i}" for i in range(TENANTS)]
    manifests = [tenants.small_tenant(n) for n in names]
    namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": tenants.namespace_of(n)}} for n in names]
    cluster.kubectl("apply", "--server-side", "-f", "-",
                    input=yaml.safe_dump_all([*namespaces, *manifests]))
    with Receiver() as receiver:
        channels = {n: Channels(receiver) for n in names}
        for name, channel in channels.items():
            channel.subscribe(cluster, name, tenants.namespace_of(name), slack=False)
        operator = OperatorProcess(
            kubeconfig_through(identity.kubeconfig, proxy, tmp_path / "operator.kubeconfig"),
            tmp_path / "operator.log",
            extra_env={"STACKFORGE_RESYNC_SECONDS": "3",
                       "STACKFORGE_NOTIFY_BACKOFF_SECONDS": "0.5"})
        operator.start(timeout=120)
        try:
            for name in names:
                tenants.wait_condition(cluster, name, "Ready", "True", timeout=180)
            # Slow: a change still converges (every request and watch event 2 s late).
            proxy.latency(LATENCY_SECONDS)
            started = time.monotonic()
            _scale_app(cluster, names, 2)
            tenants.eventually(lambda: _app_replicas(cluster, names) == {2}, timeout=300,
                               interval=1)
            for name in names:
                tenants.wait_condition(cluster, name, "Ready", "True", timeout=300)
            slow = time.monotonic() - started

            # Reset over and over: each isolation is notified once.
            proxy.latency(0)
            with proxy.resets_every(RESET_EVERY_SECONDS, lasting=120) as resets:
                _isolate(cluster, names, True)
                for name in names:
                    tenants.wait_condition(cluster, name, "Isolated", "True", timeout=120)
                tenants.eventually(lambda: all(c.webhook("TenantIsolated", "opened")
                                               for c in channels.values()),
                                   timeout=120, interval=1)
                # A backup asked now, while connections break under the applies.
                backup_requests.ask(cluster, names, POLICY, BACKUP_REQUEST)
                tenants.eventually(lambda: all(len(j) >= 2 for j in backup_requests.jobs(
                    cluster, names, POLICY).values()), timeout=120, interval=1)
                time.sleep(3 * RESET_EVERY_SECONDS)  # resyncs and resets go on
            assert sum(resets) > 0, resets
            for name, channel in channels.items():
                sent = channel.webhook("TenantIsolated", "opened", delivered=False)
                assert len(sent) == 1, (name, sent)

            # Silent for 60 s while the isolation is lifted behind its back.
            proxy.black_hole(True)
            _isolate(cluster, names, False)
            time.sleep(BLACK_HOLE_SECONDS)
            assert operator.process.running(), operator.process.log_tail()
            assert all(c.webhook("TenantIsolated", "resolved", delivered=False) == []
                       for c in channels.values())
            proxy.black_hole(False)
            lifted = time.monotonic()
            for name in names:
                tenants.wait_condition(cluster, name, "Isolated", "False", timeout=300)
                tenants.wait_condition(cluster, name, "Ready", "True", timeout=300)
            tenants.eventually(lambda: all(c.webhook("TenantIsolated", "resolved")
                                           for c in channels.values()),
                               timeout=120, interval=1)
            recovered = time.monotonic() - lifted
            time.sleep(6)  # resyncs after the resolution
            for name, channel in channels.items():
                sent = channel.webhook("TenantIsolated", "resolved", delivered=False)
                assert len(sent) == 1, (name, sent)
            assert operator.process.running(), operator.process.log_tail()
            # Against the specs as they are now (the apps scaled to 2 add a PDB).
            current = [tenants.get(cluster, n) or {} for n in names]
            wrong = [p for m in current for p in children.problems(cluster, m)]
            assert wrong == []
            # One Job for the one request, one CronJob for the schedule: none doubled.
            expected = backup_requests.expected(POLICY, BACKUP_REQUEST)
            assert backup_requests.jobs(cluster, names, POLICY) == {n: expected for n in names}
            record_property("chaos", f"{TENANTS} tenants' apps scaled through "
                                     f"{LATENCY_SECONDS:.0f} s of latency, Ready again in "
                                     f"{slow:.1f} s; {sum(resets)} connections "
                                     f"reset over {len(resets)} rounds, one notification per "
                                     f"isolation; after a {BLACK_HOLE_SECONDS} s black hole, "
                                     f"converged and resolved in {recovered:.1f} s")
        finally:
            operator.stop()
            for name in names:
                tenants.discard(cluster, name)
