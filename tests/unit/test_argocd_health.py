"""The Argo CD health check (manifests/argocd/) run with lupa against status objects.

Statuses are built with the operator's own status code (status.rollup/merge and
the pydantic status models, dumped the way the API returns them), so the Lua
reads the same shapes the operator writes. tests/support/argocd.py runs the
script exactly as shipped in argocd-cm.yaml; a cluster test can feed it objects
read from the API server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from stackforge_operator import API_GROUP, API_VERSION, status
from stackforge_operator.manifestgen import HEALTH_KINDS, health_key
from stackforge_operator.models.backup import BackupPolicyStatus
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.models.drill import DRDrillStatus
from stackforge_operator.models.tenant import StackForgeTenantStatus
from tests.support.argocd import ARGOCD_CM, REPO, health, scripts

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
STATUS_MODELS = {
    "StackForgeTenant": StackForgeTenantStatus,
    "BackupPolicy": BackupPolicyStatus,
    "DRDrill": DRDrillStatus,
}


def conditions(progress: status.Progress, reason: str, message: str) -> list[Any]:
    return status.merge([], status.rollup(progress, reason, message), generation=3, now=NOW)


READY = conditions(status.Progress.READY, "Ready", "all good")
RECONCILING = conditions(status.Progress.RECONCILING, "ComponentsNotReady",
                         "KongReady: 1/2 replicas ready")
STALLED = conditions(status.Progress.STALLED, "MissingSecret",
                     "Secret tenant-acme/s3 does not exist")


def obj(kind: str, *, spec: dict[str, Any] | None = None, generation: int = 3,
        **status_fields: Any) -> dict[str, Any]:
    """An object as the API returns it; status through the kind's pydantic model."""
    st = STATUS_MODELS[kind](**status_fields)
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": kind,
        "metadata": {"name": "acme", "generation": generation},
        "spec": spec or {},
        "status": st.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


@dataclass(frozen=True)
class Case:
    id: str
    object: dict[str, Any]
    status: str
    message: str = ""  # a substring the message must contain
    kinds: tuple[str, ...] = field(default=HEALTH_KINDS)


def common_cases(kind: str) -> list[Case]:
    """The kstatus states, the same for every kind."""
    without_status = {"kind": kind, "metadata": {"name": "acme", "generation": 1}, "spec": {}}
    return [
        Case("no-status", without_status, "Progressing", "report status"),
        Case("generation-not-observed",
             obj(kind, generation=4, observed_generation=3, conditions=READY),
             "Progressing", "observe generation 4"),
        Case("no-conditions", obj(kind, observed_generation=3), "Progressing", "Ready condition"),
        Case("ready", obj(kind, observed_generation=3, conditions=READY),
             "Healthy", "Ready: all good"),
        Case("reconciling", obj(kind, observed_generation=3, conditions=RECONCILING),
             "Progressing", "ComponentsNotReady: KongReady: 1/2 replicas ready"),
        Case("stalled", obj(kind, observed_generation=3, conditions=STALLED),
             "Degraded", "MissingSecret: Secret tenant-acme/s3 does not exist"),
        Case("ready-false-alone",
             obj(kind, observed_generation=3, conditions=[
                 c.model_copy(update={"status": ConditionStatus.FALSE}) if c.type == "Ready" else c
                 for c in READY]),
             "Progressing", "all good"),
        Case("suspended", obj(kind, spec={"suspend": True}, observed_generation=3,
                              conditions=READY),
             "Suspended", "Suspended (spec.suspend): Ready: all good"),
        Case("suspended-but-stalled", obj(kind, spec={"suspend": True}, observed_generation=3,
                                          conditions=STALLED),
             "Degraded", "MissingSecret"),
        Case("suspending", obj(kind, spec={"suspend": True}, observed_generation=3,
                               conditions=RECONCILING),
             "Progressing", "ComponentsNotReady"),
    ]


SUSPENDED_READY = conditions(status.Progress.READY, "Suspended",
                             "workloads are scaled to zero; data is kept")
SPECIFIC = [
    Case("tenant-suspended-by-status",
         obj("StackForgeTenant", observed_generation=3, conditions=SUSPENDED_READY,
             suspended=True),
         "Suspended", "Suspended: workloads are scaled to zero"),
    Case("tenant-isolated",
         obj("StackForgeTenant", spec={"isolate": True}, observed_generation=3,
             conditions=READY, isolated=True),
         "Degraded", "Isolated"),
    Case("tenant-isolated-and-stalled",
         obj("StackForgeTenant", observed_generation=3, conditions=STALLED, isolated=True),
         "Degraded", "MissingSecret"),
    Case("tenant-isolated-while-converging",
         obj("StackForgeTenant", observed_generation=3, conditions=RECONCILING, isolated=True),
         "Degraded", "Isolated"),
    Case("backup-running-nightly",
         obj("BackupPolicy", observed_generation=3, conditions=READY,
             active_run={"id": "20260301-020000", "result": "Running", "start_time": NOW}),
         "Healthy", "all good"),
    Case("backup-failed",
         obj("BackupPolicy", observed_generation=3, conditions=conditions(
             status.Progress.STALLED, "AccessDenied", "S3 refused the credentials")),
         "Degraded", "AccessDenied: S3 refused the credentials"),
    Case("drill-running",
         obj("DRDrill", observed_generation=3, conditions=READY, phase="Running",
             active_run={"run_id": "r1", "start_time": NOW, "step": "Restoring"}),
         "Healthy", "all good"),
    Case("drill-failed",
         obj("DRDrill", observed_generation=3, phase="Failed", conditions=conditions(
             status.Progress.STALLED, "RTOExceeded", "restore took 5400s, objective 3600s"),
             last_result={"run_id": "r1", "verdict": "Failed", "reason": "RTOExceeded"}),
         "Degraded", "RTOExceeded: restore took 5400s"),
    Case("drill-passed",
         obj("DRDrill", observed_generation=3, phase="Passed", conditions=READY,
             last_result={"run_id": "r1", "verdict": "Passed", "rto_seconds": 412}),
         "Healthy", "all good"),
]

ALL = [
    *((kind, case) for kind in HEALTH_KINDS for case in common_cases(kind)),
    *((case.object["kind"], case) for case in SPECIFIC),
]


@pytest.mark.parametrize(("kind", "case"), ALL, ids=[f"{k}-{c.id}" for k, c in ALL])
def test_health(kind: str, case: Case) -> None:
    got, message = health(kind, case.object)
    assert got == case.status, message
    assert case.message in message


def test_every_kind_is_registered_with_the_shipped_script() -> None:
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    source = (REPO / "manifests" / "argocd" / "health.lua").read_text()
    assert set(data) == {health_key(kind) for kind in HEALTH_KINDS}
    assert set(scripts()) == set(HEALTH_KINDS)
    assert all(text == source for text in data.values())


def test_a_tenant_status_from_the_operator_is_read_whole() -> None:
    # The tenant's full status (components, cost, last backup and drill) must
    # not trip the script: it reads only conditions and a few flags.
    tenant = obj("StackForgeTenant", observed_generation=3, conditions=READY,
                 namespace="tenant-acme", replicas=2, ready_replicas=2,
                 components=[{"name": "kong", "kind": "Kong", "ready": True, "replicas": 2,
                              "ready_replicas": 2}],
                 components_ready="1/1", suspended=False, isolated=False,
                 last_drill={"drill": "acme-monthly", "run_id": "r1", "verdict": "Passed",
                             "rto_seconds": 412})
    assert health("StackForgeTenant", tenant) == ("Healthy", "Ready: all good")


def test_sandbox_hides_os_and_io(monkeypatch: pytest.MonkeyPatch) -> None:
    # Argo CD's Lua has no os/io: a script using them must fail here as it would there.
    # lupa ships no type hints (types-lupa is not among the dev dependencies).
    import lupa.lua51 as lupa  # type: ignore[import-untyped]

    from tests.support import argocd

    script = 'return { status = "Healthy", message = tostring(os.time()) }'
    monkeypatch.setattr(argocd, "scripts", lambda: {"DRDrill": script})
    with pytest.raises(lupa.LuaError, match="os"):
        argocd.health("DRDrill", {"metadata": {}})


def test_unknown_status_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import argocd

    monkeypatch.setattr(argocd, "scripts",
                        lambda: {"DRDrill": 'return { status = "Fine", message = "" }'})
    with pytest.raises(AssertionError, match="unknown status"):
        argocd.health("DRDrill", {"metadata": {}})
