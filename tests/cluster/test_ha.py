"""Two operator replicas with kopf peering: one reconciles, the other takes over.

The replicas run as users run them (`stackforge-operator run --peering ...`
in child processes) and as the operator's ServiceAccount with the generated
ClusterRole, so the peering RBAC is exercised for real. Who reconciles is
read from each replica's own metrics: `stackforge_reconciles_total` grows
only on the active one, and `stackforge_active` says which one that is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from stackforge_operator import peering, rbac
from stackforge_operator.devcluster.operator_process import OperatorProcess
from tests.support import tenants
from tests.support.clusters import ClusterHandle
from tests.support.operator_identity import MANIFESTS, OperatorIdentity
from tests.support.tenants import eventually

RESYNC_SECONDS = 2
# The shipped default (config.DEFAULT_PEERING_LIFETIME): the failover bound under test.
LIFETIME_SECONDS = 20
FAILOVER_BUDGET = 30.0


def _metrics(process: OperatorProcess) -> dict[str, float]:
    """Each series summed over its labels: {name: total}."""
    text = httpx.get(process.metrics_url, timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def reconciles(process: OperatorProcess) -> float:
    return _metrics(process).get("stackforge_reconciles_total", 0.0)


def looks(process: OperatorProcess) -> float:
    """Reconciles, and resyncs of settled tenants that found nothing changed (both
    only on the active replica: a paused one looks at nothing)."""
    found = _metrics(process)
    return found.get("stackforge_reconciles_total", 0.0) + found.get(
        "stackforge_resyncs_skipped_total", 0.0)


def active(process: OperatorProcess) -> bool:
    return _metrics(process).get("stackforge_active", 0.0) == 1.0


@pytest.fixture
def peered_identity(
    cluster: ClusterHandle, operator_identity_installed: OperatorIdentity
) -> Iterator[Path]:
    """manifests/' ServiceAccount and ClusterRole (tests/conftest.py) and its peering
    object, as shipped; yields the ServiceAccount's kubeconfig."""
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    f"crd/{peering.PLURAL}.{peering.GROUP}")
    cluster.kubectl("apply", "--server-side", "-f", str(MANIFESTS / "peering.yaml"))
    try:
        yield operator_identity_installed.kubeconfig
    finally:
        # A fresh object per test: no replica records left over from the previous one.
        cluster.kubectl("delete", "--wait=true", "--ignore-not-found",
                        f"{peering.PLURAL}.{peering.GROUP}/{rbac.PEERING_NAME}")


def _replica(
    kubeconfig: Path, log: Path, priority: int | str, lifetime: int = LIFETIME_SECONDS
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig, log,
        extra_args=("--verbose", f"--peering={rbac.PEERING_NAME}", f"--priority={priority}"),
        extra_env={"STACKFORGE_RESYNC_SECONDS": str(RESYNC_SECONDS),
                   "STACKFORGE_STALLED_RECHECK_SECONDS": str(RESYNC_SECONDS),
                   # A settled tenant has no resync timer, only this bound: the active
                   # replica's looks then show every RESYNC_SECONDS.
                   "STACKFORGE_FULL_RESYNC_SECONDS": str(RESYNC_SECONDS),
                   "STACKFORGE_PEERING_LIFETIME_SECONDS": str(lifetime)},
    )


def _only_one_reconciles(working: OperatorProcess, idle: OperatorProcess) -> None:
    """Over several resync periods, ``working`` reconciles and ``idle`` does not."""
    eventually(lambda: active(working) and not active(idle), timeout=60)
    idle_before, working_before = looks(idle), looks(working)
    time.sleep(3 * RESYNC_SECONDS + 1)
    assert looks(idle) == idle_before, "the standby reconciled"
    assert looks(working) >= working_before + 2, "the active replica stopped resyncing"
    assert active(working) and not active(idle)


def peers(cluster: ClusterHandle) -> dict[str, Any]:
    """The peering object's status: peer id -> {priority, lifetime, lastseen}."""
    obj: Any = client.CustomObjectsApi(cluster.api).get_cluster_custom_object(
        peering.GROUP, "v1", peering.PLURAL, rbac.PEERING_NAME)
    found: dict[str, Any] = obj.get("status") or {}
    return found


def _wait_for_renewal(cluster: ClusterHandle, priority: int) -> None:
    """Return right after the peer with ``priority`` renewed its keep-alive.

    Killing it then is the worst case: its record stays valid for a whole
    lifetime after the kill.
    """
    def lastseen() -> str:
        return next(str(p["lastseen"]) for p in peers(cluster).values()
                    if p["priority"] == priority)

    before = lastseen()
    eventually(lambda: lastseen() != before, timeout=LIFETIME_SECONDS, interval=0.1)


def _ready(cluster: ClusterHandle, name: str, timeout: float) -> dict[str, Any]:
    return tenants.wait_condition(cluster, name, "Ready", "True", timeout=timeout)


def test_standby_takes_over_within_30s_and_yields_to_a_higher_priority(
    cluster: ClusterHandle, peered_identity: Path, tmp_path: Path
) -> None:
    first = tenants.small_tenant("ha-first")
    steady = tenants.small_tenant("ha-steady")  # never touched after the kill
    second = tenants.small_tenant("ha-second")
    replicas: list[OperatorProcess] = []

    def start(name: str, priority: int) -> OperatorProcess:
        replica = _replica(peered_identity, tmp_path / f"{name}.log", priority)
        replicas.append(replica)
        replica.start()
        return replica

    try:
        # The lower priority starts first and serves alone for a while...
        standby = start("standby", 10)
        eventually(lambda: active(standby), timeout=60)
        tenants.apply(cluster, first)
        tenants.apply(cluster, steady)
        _ready(cluster, "ha-first", timeout=120)
        _ready(cluster, "ha-steady", timeout=120)
        # ...until a higher-priority replica appears: it takes over, the first pauses.
        leader = start("leader", 20)
        _only_one_reconciles(leader, standby)
        assert "standing by" in standby.process.log_path.read_text()
        # The standby shows no per-tenant series either: only the active one reports.
        assert _metrics(standby).get("stackforge_tenants") == 0
        assert _metrics(leader).get("stackforge_tenants") == 2

        # SIGKILL the active replica just after its keep-alive: no goodbye in the
        # peering object, and its record stays valid for a whole lifetime.
        _wait_for_renewal(cluster, 20)
        assert leader.process.popen is not None
        leader.process.popen.kill()
        leader.process.popen.wait()
        killed = time.monotonic()
        changed = tenants.small_tenant("ha-first")
        changed["spec"]["components"]["apps"][0]["image"] = "registry.example.com/shop/api:1.0.1"
        tenants.apply(cluster, changed)
        tenants.apply(cluster, second)
        for name in ("ha-first", "ha-second"):
            _ready(cluster, name, timeout=FAILOVER_BUDGET + 30)
        took = time.monotonic() - killed
        print(f"failover (worst case): both tenants Ready {took:.1f}s after the kill "
              f"(peering lifetime {LIFETIME_SECONDS}s)")
        assert took <= FAILOVER_BUDGET, f"standby needed {took:.1f}s"
        assert active(standby) and reconciles(standby) > 0
        # It had forgotten everything when it paused; kopf's re-listing on resume
        # brought back the tenant nobody touched since, and it was reconciled.
        eventually(lambda: _metrics(standby).get("stackforge_tenants") == 3, timeout=10)

        # A higher priority again: the standby's controllers stop, gated.
        newer = start("newer", 30)
        _only_one_reconciles(newer, standby)
    finally:
        for replica in replicas:
            replica.stop()
        for name in ("ha-first", "ha-steady", "ha-second"):
            tenants.discard(cluster, name)


def test_peering_object_lists_both_replicas_with_their_priorities(
    cluster: ClusterHandle, peered_identity: Path, tmp_path: Path
) -> None:
    # A lifetime other than the default shows the setting reaches kopf.
    replicas = [_replica(peered_identity, tmp_path / f"r{p}.log", p, lifetime=15)
                for p in (5, 6)]
    try:
        for replica in replicas:
            replica.start()
        status = eventually(lambda: len(peers(cluster)) >= 2 and peers(cluster), timeout=60)
        assert sorted(p["priority"] for p in status.values()) == [5, 6]
        assert {p["lifetime"] for p in status.values()} == {15}
        eventually(lambda: active(replicas[1]) and not active(replicas[0]), timeout=60)
    finally:
        for replica in replicas:
            replica.stop()
    # A replica that stops cleanly removes its own record (kopf's last touch).
    eventually(lambda: not peers(cluster), timeout=30)


def test_auto_priorities_elect_exactly_one_and_equal_ones_none(
    cluster: ClusterHandle, peered_identity: Path, tmp_path: Path
) -> None:
    # What the Deployment does: one pod template, --priority=auto in both pods.
    replicas = [_replica(peered_identity, tmp_path / f"auto{i}.log", "auto") for i in (0, 1)]
    try:
        for replica in replicas:
            replica.start()
        # Both have written their records, so each has seen the other: stable now.
        eventually(lambda: len(peers(cluster)) == 2, timeout=60)
        eventually(lambda: sum(active(r) for r in replicas) == 1, timeout=30)
        time.sleep(2)
        assert sum(active(r) for r in replicas) == 1
        priorities = sorted(p["priority"] for p in peers(cluster).values())
        assert len(priorities) == 2 and priorities[0] != priorities[1] and priorities[0] > 0
        for replica in replicas:
            assert "(drawn at random: --priority=auto)" in replica.process.log_path.read_text()
    finally:
        for replica in replicas:
            replica.stop()

    # Equal priorities: kopf pauses both, so neither may reconcile.
    same = [_replica(peered_identity, tmp_path / f"same{i}.log", 7) for i in (0, 1)]
    try:
        for replica in same:
            replica.start()

        def warned(replica: OperatorProcess) -> bool:
            return "conflicting operators with the same priority" in (
                replica.process.log_path.read_text())

        eventually(lambda: all(warned(r) for r in same), timeout=60)
        time.sleep(2)
        assert not any(active(r) for r in same)
    finally:
        for replica in same:
            replica.stop()
