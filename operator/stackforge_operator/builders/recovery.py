"""The verification of an in-place recovery: the drill's runner, against the restored primary.

The runner (``drill run --recovery-target``) checks what a Physical drill
checks: the server answers, it is promoted and replayed nothing after the
target, and the queries of the DRDrill the request names return what they
should. It writes its report beside the drills' in the policy's bucket. It
runs in the tenant's namespace as a backup runner, whose NetworkPolicies
already let it reach the database and the bucket, and it logs in as the
superuser: verifying reads every table, whoever owns it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from stackforge_operator.builders import drill
from stackforge_operator.builders.backup import POLICY_LABEL, storage_access, storage_args
from stackforge_operator.builders.common import (
    RUNNER_LABEL,
    Manifest,
    labels,
    metadata,
    rfc3339,
    runner_pod,
)
from stackforge_operator.builders.postgres import superuser_connection
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.drill import QueryCheck
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import RecoveryStatus

COMPONENT: Final = "recovery"
CHECKS_PREFIX: Final = "recovery-checks"
JOB_PREFIX: Final = "recovery-verify"
# How long the runner waits for the restored server to answer (it is Ready
# before the Job is made: a margin for a restart, not a restore).
WAIT_SECONDS: Final = 120
DEADLINE_SECONDS: Final = 1800


def _suffix(recovery: RecoveryStatus) -> str:
    # One name per recovery: a later one never finds an earlier one's Job.
    seed = f"{recovery.request}/{recovery.start_time}/{recovery.ordinal}"
    return hashlib.sha256(seed.encode()).hexdigest()[:10]


def job_name(recovery: RecoveryStatus) -> str:
    return f"{JOB_PREFIX}-{_suffix(recovery)}"


def checks_name(recovery: RecoveryStatus) -> str:
    return f"{CHECKS_PREFIX}-{_suffix(recovery)}"


def run_id(recovery: RecoveryStatus) -> str:
    """The report's name: ``recovery-`` and when the recovery began."""
    started = recovery.start_time.strftime("%Y%m%dT%H%M%SZ") if recovery.start_time else "x"
    return f"recovery-{started}-{_suffix(recovery)[:6]}"


def checks_config(t: EffectiveTenant, recovery: RecoveryStatus,
                  queries: Sequence[QueryCheck]) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(t, checks_name(recovery), COMPONENT),
        "data": {drill.CHECKS_FILE: drill.checks_document(queries)},
    }


def verification_job(t: EffectiveTenant, recovery: RecoveryStatus, storage: ObjectStorage,
                     started_at: datetime) -> Manifest:
    """The runner's Job; the checks ConfigMap (checks_config) must exist beside it."""
    assert recovery.recovery_target and recovery.repository_path  # set when it began
    args = ["drill", "run", "--tenant", t.name, *storage_args(storage),
            "--recovery-target", recovery.recovery_target,
            "--repository", recovery.repository_path,
            "--wait-seconds", str(WAIT_SECONDS),
            "--run-id", run_id(recovery),
            "--started-at", rfc3339(started_at),
            "--checks-file", f"{drill.CHECKS_MOUNT}/{drill.CHECKS_FILE}",
            # The tenant's own database: per-schema grants would stay in its
            # ACLs (check_login.py), pg_read_all_data grants on nothing.
            "--checks-read", "all-data",
            "--termination-log", "/dev/termination-log"]
    # The restored pod itself: nothing else may answer.
    variables = superuser_connection(t, recovery.ordinal)
    s3_variables, s3_mounts, s3_volumes = storage_access(storage)
    variables += s3_variables
    mounts: list[dict[str, Any]] = [
        {"name": "checks", "mountPath": drill.CHECKS_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        *s3_mounts,
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "checks", "configMap": {"name": checks_name(recovery)}},
        {"name": "tmp", "emptyDir": {}},
        *s3_volumes,
    ]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata(t, job_name(recovery), COMPONENT),
        "spec": {
            # A failed verification rolls the recovery back; it is not retried.
            "backoffLimit": 0,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "template": {
                # A backup runner of the policy restored from: the tenant's and the
                # policy's NetworkPolicies let it reach the database and the bucket.
                "metadata": {"labels": {**labels(t, COMPONENT), RUNNER_LABEL: "backup",
                                        POLICY_LABEL: recovery.backup_policy or ""}},
                "spec": runner_pod("verify", args, variables, mounts, volumes),
            },
        },
    }
