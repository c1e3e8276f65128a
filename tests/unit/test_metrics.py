"""Operator metrics (stackforge_operator/metrics.py) and the Grafana dashboard built on them."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
from prometheus_client import REGISTRY

from stackforge_operator import metrics
from stackforge_operator.metrics import OperatorMetrics, Result, TenantHealth, tenant_health
from stackforge_operator.status import Progress

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "stackforge-operator" / "dashboards" / "operator.json"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def m(clock: Clock) -> OperatorMetrics:
    return OperatorMetrics(clock=clock)


# Tenants are keyed "<namespace>/<name>", as the controller keys them.
ACME_KEY = "tenant-acme/acme"
ACME = {"namespace": "tenant-acme", "tenant": "acme"}


def value(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def tenant_status(*, ready: bool, backup: datetime | None = None,
                  verdict: str | None = None, rto: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "reason": "X"},
        {"type": "Reconciling", "status": "False" if ready else "True", "reason": "X"},
    ]}
    if backup is not None:
        status["lastBackup"] = {"policy": "nightly", "runId": "r", "result": "Succeeded",
                                "lastSuccessTime": backup.isoformat().replace("+00:00", "Z")}
    if verdict is not None:
        status["lastDrill"] = {"drill": "monthly", "runId": "d", "verdict": verdict,
                               **({"rtoSeconds": rto} if rto is not None else {})}
    return status


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("status", "expected"), [
    (None, TenantHealth(ready=False)),
    ({}, TenantHealth(ready=False)),
    (tenant_status(ready=True), TenantHealth(ready=True)),
    (tenant_status(ready=False, backup=NOW, verdict="Failed", rto=90),
     TenantHealth(ready=False, newest_backup=NOW, drill_verdict="Failed", drill_rto_seconds=90.0)),
    ({"lastBackup": {"lastSuccessTime": "not a time"}, "lastDrill": {"verdict": "Passed"}},
     TenantHealth(ready=False, drill_verdict="Passed")),
])
def test_tenant_health(status: dict[str, Any] | None, expected: TenantHealth) -> None:
    assert tenant_health(status) == expected


@pytest.mark.parametrize(("progress", "result"), [
    (Progress.READY, Result.READY),
    (Progress.RECONCILING, Result.RECONCILING),
    (Progress.STALLED, Result.STALLED),
])
def test_result_of_progress(progress: Progress, result: Result) -> None:
    assert metrics.result_of_progress(progress.value) is result


def test_result_of_error() -> None:
    assert metrics.result_of_error(kopf.TemporaryError("409")) is Result.RETRY
    assert metrics.result_of_error(kopf.PermanentError("bad spec")) is Result.STALLED
    assert metrics.result_of_error(KeyError("x")) is Result.ERROR


@pytest.mark.parametrize(("environ", "port"), [
    ({}, 9090),
    ({"STACKFORGE_METRICS_PORT": "9102"}, 9102),
    ({"STACKFORGE_METRICS_PORT": "0"}, None),
])
def test_port_from_env(environ: dict[str, str], port: int | None) -> None:
    assert metrics.port_from_env(environ) == port


def test_port_from_env_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="not a port"):
        metrics.port_from_env({"STACKFORGE_METRICS_PORT": "70000"})


# --------------------------------------------------------------------------- reconciles


def test_reconciles_are_counted_and_timed(m: OperatorMetrics) -> None:
    m.record_reconcile("StackForgeTenant", Result.READY, 0.2)
    m.record_reconcile("StackForgeTenant", Result.READY, 3.0)
    m.record_reconcile("BackupPolicy", Result.STALLED, 0.01)
    assert value(m, "stackforge_reconciles_total", kind="StackForgeTenant", result="ready") == 2
    assert value(m, "stackforge_reconciles_total", kind="BackupPolicy", result="stalled") == 1
    assert value(m, "stackforge_reconcile_duration_seconds_count", kind="StackForgeTenant") == 2
    assert value(m, "stackforge_reconcile_duration_seconds_sum",
                 kind="StackForgeTenant") == pytest.approx(3.2)
    assert value(m, "stackforge_reconcile_duration_seconds_bucket",
                 kind="StackForgeTenant", le="0.25") == 1


def test_time_reconcile_labels_the_outcome(m: OperatorMetrics) -> None:
    with m.time_reconcile("DRDrill") as timing:
        timing.result = Result.RECONCILING
    with pytest.raises(kopf.TemporaryError), m.time_reconcile("DRDrill"):
        raise kopf.TemporaryError("conflict", delay=5)
    with pytest.raises(RuntimeError), m.time_reconcile("DRDrill"):
        raise RuntimeError("bug")
    for result in ("reconciling", "retry", "error"):
        assert value(m, "stackforge_reconciles_total", kind="DRDrill", result=result) == 1
    assert value(m, "stackforge_reconcile_duration_seconds_count", kind="DRDrill") == 3


def test_a_cancelled_reconcile_is_not_counted(m: OperatorMetrics) -> None:
    import asyncio

    with pytest.raises(asyncio.CancelledError), m.time_reconcile("StackForgeTenant"):
        raise asyncio.CancelledError
    assert value(m, "stackforge_reconcile_duration_seconds_count", kind="StackForgeTenant") is None


# --------------------------------------------------------------------------- tenants


def test_tenants_by_ready(m: OperatorMetrics) -> None:
    assert value(m, "stackforge_tenants", ready="true") == 0
    assert value(m, "stackforge_tenants", ready="false") == 0
    m.observe_tenant(ACME_KEY, tenant_status(ready=True))
    m.observe_tenant("tenant-globex/globex", tenant_status(ready=False))
    m.observe_tenant("tenant-initech/initech", tenant_status(ready=True))
    # A tenant counts once, as it is now.
    m.observe_tenant("tenant-globex/globex", tenant_status(ready=True))
    assert value(m, "stackforge_tenants", ready="true") == 3
    assert value(m, "stackforge_tenants", ready="false") == 0
    m.forget_tenant(ACME_KEY)
    m.forget_tenant("tenant-never-seen/never-seen")
    assert value(m, "stackforge_tenants", ready="true") == 2


def test_backup_age_grows_between_reconciles(m: OperatorMetrics, clock: Clock) -> None:
    m.observe_tenant(ACME_KEY, tenant_status(ready=True, backup=NOW - timedelta(hours=10)))
    assert value(m, "stackforge_backup_newest_age_seconds", **ACME) == 10 * 3600
    clock.now += timedelta(hours=17)  # no reconcile meanwhile: the age is still right
    assert value(m, "stackforge_backup_newest_age_seconds", **ACME) == 27 * 3600


def test_no_backup_no_series(m: OperatorMetrics) -> None:
    m.observe_tenant(ACME_KEY, tenant_status(ready=True))
    assert value(m, "stackforge_backup_newest_age_seconds", **ACME) is None


def test_drill_verdict_is_one_hot(m: OperatorMetrics) -> None:
    m.observe_tenant(ACME_KEY, tenant_status(ready=True, verdict="Passed", rto=412))
    assert value(m, "stackforge_drill_last_verdict", **ACME, verdict="Passed") == 1
    assert value(m, "stackforge_drill_last_verdict", **ACME, verdict="Failed") == 0
    assert value(m, "stackforge_drill_last_rto_seconds", **ACME) == 412
    m.observe_tenant(ACME_KEY, tenant_status(ready=False, verdict="Failed"))
    assert value(m, "stackforge_drill_last_verdict", **ACME, verdict="Passed") == 0
    assert value(m, "stackforge_drill_last_verdict", **ACME, verdict="Failed") == 1
    assert value(m, "stackforge_drill_last_rto_seconds", **ACME) is None


def test_a_deleted_tenant_leaves_no_series(m: OperatorMetrics) -> None:
    m.observe_tenant(ACME_KEY, tenant_status(ready=True, backup=NOW, verdict="Passed", rto=5))
    m.forget_tenant(ACME_KEY)
    for name in ("stackforge_backup_newest_age_seconds", "stackforge_drill_last_rto_seconds"):
        assert value(m, name, **ACME) is None
    assert value(m, "stackforge_drill_last_verdict", **ACME, verdict="Passed") is None


def test_own_registry_not_the_global_one(m: OperatorMetrics) -> None:
    m.record_reconcile("StackForgeTenant", Result.READY, 0.1)
    assert REGISTRY.get_sample_value(
        "stackforge_reconciles_total", {"kind": "StackForgeTenant", "result": "ready"}) is None
    # Two instances never collide (each test, and the process's METRICS).
    OperatorMetrics()


def test_served_over_http(m: OperatorMetrics) -> None:
    m.observe_tenant(ACME_KEY, tenant_status(ready=True, verdict="Passed", rto=60))
    server = m.serve(0, addr="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    finally:
        server.stop()
    assert 'stackforge_drill_last_rto_seconds{namespace="tenant-acme",tenant="acme"} 60.0' in text
    assert 'stackforge_tenants{ready="true"} 1.0' in text


# --------------------------------------------------------------------------- dashboard


def sample_names() -> set[str]:
    """Every series name the operator exposes, with one of everything recorded."""
    m = OperatorMetrics(clock=lambda: NOW.timestamp())
    m.record_reconcile("StackForgeTenant", Result.READY, 0.1)
    m.observe_tenant(ACME_KEY, {
        **tenant_status(ready=True, backup=NOW, verdict="Passed", rto=1),
        "usage": {"cpu": {"requested": "1500m", "quota": "4", "used": "120m"}}})
    m.record_notification("BackupFailed", "sent")
    m.record_watch_event("StackForgeTenant")
    m.record_skipped_resync("StackForgeTenant")
    return {s.name for family in m.registry.collect() for s in family.samples}


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_dashboard_uses_only_real_metrics() -> None:
    exprs = dashboard_expressions()
    used = {name for e in exprs for name in re.findall(r"\bstackforge_[a-z_]+", e)}
    assert used, "the dashboard queries nothing"
    unknown = used - sample_names()
    assert not unknown, f"the dashboard uses series metrics.py does not expose: {unknown}"


def test_dashboard_shows_every_metric() -> None:
    families = {f.name for f in OperatorMetrics().registry.collect()}
    text = " ".join(dashboard_expressions())
    missing = {f for f in families if f not in text}
    assert not missing, f"metrics without a panel: {missing}"


def test_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] == "stackforge-operator"
    for panel in board["panels"]:
        assert panel["title"] and panel["description"] and panel["gridPos"]["w"] <= 24
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
