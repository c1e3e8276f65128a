"""What `kubectl stackforge status` prints (pure)."""

from __future__ import annotations

from typing import Any

from stackforge_operator.plugin import render


def _tenant(name: str = "acme", ready: str = "True", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": f"tenant-{name}"},
            "spec": {"tier": "Growth"},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "Ready",
                                       "message": "all components ready"}],
                       "componentsReady": "2/2",
                       "components": [{"name": "postgres", "kind": "Postgres", "ready": True,
                                       "replicas": 1, "readyReplicas": 1}],
                       "cost": {"priceMonthly": "393.15", "infrastructureMonthly": "131.05",
                                "computeMonthly": "96.00", "storageMonthly": "13.21",
                                "backupMonthly": "21.84"},
                       **status}}


def test_one_screen_has_conditions_components_backups_drills_incidents_and_cost() -> None:
    policy = {"metadata": {"name": "nightly"}, "status": {
        "conditions": [{"type": "LastBackupSucceeded", "status": "True"},
                       {"type": "ContinuousArchiving", "status": "True"}],
        "continuousArchiving": {"lastArchivedWal": "000000010000000000000007",
                                "lastArchivedTime": "2026-12-01T02:00:00Z"},
        "physicalBackups": {"recoverabilityWindow": {"firstPoint": "2026-11-30T02:00:00Z",
                                                     "lastPoint": "2026-12-01T02:00:00Z"}}}}
    drill = {"metadata": {"name": "monthly"},
             "status": {"lastResult": {"verdict": "Passed", "rtoSeconds": 42, "rpoSeconds": 7}}}
    screen = render.tenant_screen(
        _tenant(incidents=[{"key": "BackupStale/nightly", "since": "2026-12-01T03:00:00Z"}],
                lastBackup={"result": "Succeeded", "runId": "r1", "policy": "nightly"}),
        [policy], [drill])
    for expected in ("Tenant acme (namespace tenant-acme): Ready=True Ready: all components",
                     "postgres  Postgres  True   1/1", "last run: Succeeded r1 (policy nightly",
                     "policy nightly: LastBackupSucceeded=True, archiving=True (last segment "
                     "000000010000000000000007", "recoverable 2026-11-30T02:00:00Z ..",
                     "drill monthly: Passed, RTO 42 s, RPO 7 s", "Incidents (1 open):",
                     "BackupStale/nightly since", "Cost: 393.15 USD/month"):
        assert expected in screen, (expected, screen)
    assert "\033[" not in screen  # no colour unless asked


def test_an_isolation_and_its_settling_lift_are_told_apart() -> None:
    def screen(reason: str) -> str:
        tenant = _tenant(isolated=True)
        tenant["status"]["conditions"].append(
            {"type": "Isolated", "status": "True", "reason": reason, "message": ""})
        return render.tenant_screen(tenant, [], [])

    assert "ISOLATED (spec.isolate)" in screen("IsolationRequested")
    assert "ISOLATED (lifted; settling, see the Isolated condition)" in screen("IsolationLifting")
    assert "ISOLATED" not in render.tenant_screen(_tenant(), [], [])


def test_colours_only_when_asked() -> None:
    screen = render.tenant_screen(_tenant(ready="False"), [], [], color=True)
    assert "\033[31mReady=False\033[0m" in screen


def test_the_cluster_summary_lists_every_tenant_and_the_totals() -> None:
    usage = {"cpu": {"requested": "1500m", "quota": "4", "used": "230m"},
             "memory": {"requested": "3Gi", "quota": "8Gi"},
             "storage": {"requested": "2Gi", "quota": "100Gi", "used": "61Mi"}}
    summary = render.cluster_summary([_tenant("zeta", usage=usage),
                                      _tenant("acme", ready="False")])
    lines = summary.splitlines()
    assert lines[0].split() == ["NAMESPACE", "TENANT", "TIER", "READY", "COMPONENTS",
                                "INCIDENTS", "CPU", "REQ/QUOTA/USED", "MEMORY",
                                "REQ/QUOTA/USED", "STORAGE", "REQ/QUOTA/USED", "PRICE/MONTH"]
    assert lines[1].split() == ["tenant-acme", "acme", "Growth", "False", "2/2", "0",
                                "-/-/-", "-/-/-", "-/-/-", "393.15"]
    assert lines[2].split()[6:9] == ["1500m/4/230m", "3Gi/8Gi/-", "2Gi/100Gi/61Mi"]
    assert lines[2].split()[1] == "zeta"
    assert lines[-1] == "2 tenants, 1 Ready; 786.30 USD/month"
