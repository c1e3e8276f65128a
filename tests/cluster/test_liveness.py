"""The operator's liveness endpoint fails when its work queues stop making progress,
and recovers when they move again: the API server of a cluster of the test's own is
frozen (SIGSTOP), so the operator's reconciles hang in their requests while resyncs
pile up; then it is thawed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.devcluster.processes import processes_mentioning
from tests.support import tenants
from tests.support.clusters import private_cluster
from tests.support.tenants import eventually

WEDGED_SECONDS = 3


def _api_server_pid(run_dir: Path) -> int:
    for pid in processes_mentioning(str(run_dir)):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kube-apiserver" in argv[:3]:
            return pid
    raise AssertionError(f"no kube-apiserver of {run_dir} is running")


def _health(operator: OperatorProcess) -> httpx.Response | None:
    try:
        return httpx.get(operator.liveness_url, timeout=5)
    except httpx.HTTPError:
        return None


def test_liveness_fails_while_no_reconcile_can_finish_and_recovers(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir = tmp_path_factory.mktemp("wedge")
    with private_cluster(run_dir, nodes=0) as (local, cluster):
        operator = OperatorProcess(local.kubeconfig, run_dir / "operator.log", extra_env={
            "STACKFORGE_WEDGED_SECONDS": str(WEDGED_SECONDS),
            "STACKFORGE_RESYNC_SECONDS": "1", "STACKFORGE_RECONCILE_WORKERS": "1",
            # A stopped API server wedges a reconcile that reads it; one answered
            # from the watch caches would go on finishing (nothing to write).
            "STACKFORGE_WATCH_CACHES": "off"})
        operator.start()
        try:
            tenants.apply(cluster, tenants.small_tenant("wedge"))
            # Reconciled once (a status written), so the tenant is on the queue and
            # resyncs every second: on a busy machine the operator's first lists can
            # wait on the API server's CRD caches for a while.
            eventually(lambda: ((tenants.get(cluster, "wedge") or {}).get("status") or {})
                       .get("observedGeneration"), timeout=120)
            eventually(lambda: (r := _health(operator)) is not None and r.status_code == 200,
                       timeout=60)
            api_server = _api_server_pid(run_dir)
            os.kill(api_server, signal.SIGSTOP)
            try:
                # The bound: the wedge threshold, plus kopf's 10 s cache of a good answer.
                failing = eventually(lambda: (r := _health(operator)) is not None
                                     and r.status_code == 500 and r,
                                     timeout=WEDGED_SECONDS + 10 + 10, interval=0.5)
                assert failing.status_code == 500
            finally:
                os.kill(api_server, signal.SIGCONT)
            eventually(lambda: (r := _health(operator)) is not None and r.status_code == 200,
                       timeout=90, interval=0.5)
            log = (run_dir / "operator.log").read_text()
            assert "liveness: work queue stopped: StackForgeTenant:" in log
        finally:
            operator.stop()
