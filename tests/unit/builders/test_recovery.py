"""The verification of an in-place recovery: the drill's runner against the restored pod.

(The recovery's steps: tests/unit/reconcile/test_recovery.py; on running pods:
tests/realnode/test_archiving.py.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from stackforge_operator.builders import backup_network, recovery, s3ca
from stackforge_operator.builders.common import RUNNER_LABEL
from stackforge_operator.models.drill import QueryCheck
from stackforge_operator.models.tenant import RecoveryPhase, RecoveryStatus
from tests.unit.builders.tenants import container, env_of, secret_ref, tenant
from tests.unit.builders.test_drill_restore import STORAGE

STARTED = datetime(2026, 12, 1, 6, 0, 5, tzinfo=UTC)
RECOVERY = RecoveryStatus(
    request="2026-12-01T05:40:00Z", phase=RecoveryPhase.VERIFYING,
    recovery_target="2026-12-01T05:40:00Z", backup_policy="archive",
    repository_path="/backups/_pgbackrest/acme/7400-20261129T000000Z",
    previous_ordinal=0, ordinal=1, start_time=STARTED)


def test_the_runner_verifies_the_restored_pod_to_the_target_and_reports_beside_the_drills(
        ) -> None:
    job = recovery.verification_job(tenant(), RECOVERY, STORAGE, STARTED)
    runner = container(job)
    args = runner["args"]
    assert args[:4] == ["drill", "run", "--tenant", "acme"]

    def after(flag: str) -> str:
        return str(args[args.index(flag) + 1])

    assert after("--recovery-target") == "2026-12-01T05:40:00Z"
    assert after("--repository") == RECOVERY.repository_path
    assert after("--started-at") == "2026-12-01T06:00:05Z"
    assert after("--bucket") == "backups" and after("--endpoint") == "https://s3.internal:9000"
    assert after("--run-id").startswith("recovery-20261201T060005Z-")
    assert "--force-path-style" in args
    # The tenant's own database: its checks' login grants on nothing (no ACL changes).
    assert after("--checks-read") == "all-data"
    env = env_of(runner)
    # The restored pod by its own name, not the Service (the old pod may answer there).
    assert env["PGHOST"]["value"] == "postgres-1.postgres-headless.tenant-acme.svc"
    assert env["PGDATABASE"]["value"] == "acme" and env["PGUSER"]["value"] == "postgres"
    assert secret_ref(env["PGPASSWORD"]) == ("postgres-credentials", "superuser-password")
    assert secret_ref(env["AWS_ACCESS_KEY_ID"]) == ("tenant-s3", "id")
    assert env[s3ca.env()["name"]] == s3ca.env()
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] > 0
    # A runner of the policy restored from: its egress NetworkPolicy selects it.
    labels = spec["template"]["metadata"]["labels"]
    selected = backup_network.runner_peer("archive").selector()["matchLabels"]
    assert labels[RUNNER_LABEL] == "backup" and selected.items() <= labels.items()


def test_each_recovery_has_its_own_job_and_checks() -> None:
    later = RECOVERY.model_copy(update={"start_time": datetime(2026, 12, 2, tzinfo=UTC)})
    assert recovery.job_name(later) != recovery.job_name(RECOVERY)
    job = recovery.verification_job(tenant(), RECOVERY, STORAGE, STARTED)
    [checks] = [v for v in job["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    assert checks["configMap"]["name"] == recovery.checks_name(RECOVERY)
    config = recovery.checks_config(tenant(), RECOVERY, [
        QueryCheck.model_validate({"name": "orders", "sql": "SELECT count(*) FROM orders",
                                   "expectedValue": "1200"})])
    assert config["metadata"]["name"] == recovery.checks_name(RECOVERY)
    assert json.loads(config["data"]["checks.json"]) == [
        {"name": "orders", "sql": "SELECT count(*) FROM orders", "expected": "1200"}]
