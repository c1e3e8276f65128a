"""The pods of backups and drills, built the way their reconcilers build them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from stackforge_operator.builders import backup, drill
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.drill import DRDrillSpec
from stackforge_operator.models.effective import EffectiveTenant

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
POLICY = "acme-nightly"
DRILL = "acme-monthly"
SANDBOX = "drill-acme-monthly-1"


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())["spec"]
    return spec


def backup_objects(t: EffectiveTenant) -> list[Manifest]:
    """The CronJob and an on-demand Job of the example BackupPolicy."""
    spec = BackupPolicySpec.model_validate(_spec("backuppolicy-acme.yaml"))
    return [backup.cron_job(POLICY, t.namespace, spec, t, "0 2 * * *", "Etc/UTC"),
            backup.manual_job(POLICY, t.namespace, spec, t, "now-1")]


def drill_objects(t: EffectiveTenant) -> list[Manifest]:
    """The example DRDrill's scratch database and restore Job, and a Physical run's."""
    spec = DRDrillSpec.model_validate(_spec("drdrill-acme.yaml"))
    physical = drill.PhysicalSource("/backups/_pgbackrest/acme/7400-20260101T000000Z", "latest")
    policy = BackupPolicySpec.model_validate(_spec("backuppolicy-acme.yaml"))

    def job(source: drill.PhysicalSource | None) -> Manifest:
        return drill.restore_job(
            SANDBOX, DRILL, t.namespace, spec, t, storage={"bucket": "backups"},
            backup_id="b1", started_at=datetime(2026, 1, 1, tzinfo=UTC),
            rto_seconds=3600, rpo_seconds=93600, with_s3_keys=True, physical=source)

    return [*drill.scratch_database(SANDBOX, DRILL, t.namespace, t, spec.sandbox), job(None),
            *drill.restored_database(SANDBOX, DRILL, t.namespace, t, box=spec.sandbox,
                                     storage=policy.storage, source=physical, app_user="app"),
            job(physical)]


def runner_objects(t: EffectiveTenant) -> list[Manifest]:
    return [*backup_objects(t), *drill_objects(t)]


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod spec anywhere in ``manifests`` (workload, Job and CronJob templates).

    Found by shape (a mapping with ``containers``), so a new kind of pod-owning
    object cannot slip past the tests that use this.
    """
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append((where, node))
                return
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for m in manifests:
        walk(m.get("spec"), f"{m['kind']}/{m['metadata']['name']}")
    return found


def runner_images(t: EffectiveTenant) -> set[str]:
    """The images of the backup CronJob, an on-demand backup and a drill's restore Job:
    the pods that run the operator's image (it holds the runners)."""
    jobs = [*backup_objects(t), *(m for m in drill_objects(t) if m["kind"] == "Job")]
    specs = pod_specs(jobs)
    assert {where.split("/")[0] for where, _ in specs} == {"CronJob", "Job"}
    return {c["image"] for _, pod in specs for c in pod["containers"]}
