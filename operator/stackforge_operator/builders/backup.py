"""A BackupPolicy's children: the CronJob running `stackforge-operator backup run`, the
on-demand Job, and the ConfigMap holding the tenant configuration the runner stores.

Credentials reach the runner only through the environment, from Secrets by
reference: never as arguments (visible in the process list) and never in a
manifest. The S3 endpoint's CA bundle (``spec.storage.endpointCA``) is no
secret but a file: mounted, and named by ``AWS_CA_BUNDLE`` (builders/s3ca.py).
Runner pods carry the ``stackforge.io/runner=backup`` label: the tenant's
database admits them, their policy's NetworkPolicy lets them out
(builders/backup_network.py), and the test control plane leaves them to a
harness that runs their command for real.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from stackforge_operator import API_GROUP
from stackforge_operator.builders import s3ca
from stackforge_operator.builders.common import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POSTGRES_PORT,
    RUNNER_LABEL,
    TENANT_LABEL,
    Manifest,
    fitted,
    runner_pod,
)
from stackforge_operator.builders.secrets_names import (
    POSTGRES_PASSWORD_KEY,
    POSTGRES_SECRET,
    POSTGRES_USER_KEY,
)
from stackforge_operator.models.backup import (
    BackupPolicySpec,
    BackupTarget,
    DumpCompression,
    ObjectStorage,
)
from stackforge_operator.models.cel import MAX_LABEL_VALUE
from stackforge_operator.models.effective import EffectiveTenant

# How long a backup run asks a database that refuses or does not answer (runner flag).
CONNECT_WAIT_SECONDS = 20
POLICY_LABEL = f"{API_GROUP}/backup-policy"
BACKUP_NOW_ANNOTATION = f"{API_GROUP}/backup-now"
CONFIG_MOUNT = "/etc/stackforge/configuration"
CONFIG_FILE = "tenant.json"
DEFAULT_DEADLINE_SECONDS = 6 * 3600
# The runner's own user (the operator image runs as non-root).


def deadline_seconds(policy_spec: BackupPolicySpec) -> int:
    """How long a run of the policy may take (its Jobs' activeDeadlineSeconds), and
    how long a physical backup it asks for may stay unanswered."""
    return policy_spec.active_deadline_seconds or DEFAULT_DEADLINE_SECONDS


# The API server's limits: a CronJob's name is at most 52 (its Jobs add 11), a
# Job's is a label value (its pods' job-name). A policy's name may be 63: one of
# more than 45 had its CronJob refused (no scheduled backup at all), of more than
# 41 every on-demand Job. Longer derived names are cut and told apart by a digest.
CRON_JOB_NAME_MAX = 52


def cron_job_name(policy: str) -> str:
    return fitted(f"backup-{policy}", CRON_JOB_NAME_MAX)


def configuration_name(policy: str) -> str:
    return f"backup-{policy}-configuration"


def manual_job_name(policy: str, request: str) -> str:
    """One Job per on-demand request: the same request never runs twice."""
    suffix = f"-now-{hashlib.sha256(request.encode()).hexdigest()[:10]}"
    return fitted(f"backup-{policy}", MAX_LABEL_VALUE - len(suffix)) + suffix


def _labels(policy: str, tenant: str) -> dict[str, str]:
    return {POLICY_LABEL: policy, TENANT_LABEL: tenant, MANAGED_BY_LABEL: MANAGED_BY}


def child_metadata(name: str, namespace: str, policy: str, tenant: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": _labels(policy, tenant)}


def configuration(
    policy: str, namespace: str, t: EffectiveTenant, tenant_spec: Mapping[str, Any],
    children: Sequence[Manifest],
) -> Manifest:
    """The tenant's configuration as the runner stores it: its spec and rendered objects.

    Secrets are left out entirely (their values must never reach the backup
    bucket in clear text, and generated ones are recreated on restore).
    """
    document = {
        "tenant": t.name,
        "spec": tenant_spec,
        "objects": [c for c in children if c["kind"] != "Secret"],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(configuration_name(policy), namespace, policy, t.name),
        "data": {CONFIG_FILE: json.dumps(document, sort_keys=True, indent=1)},
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def storage_args(storage: ObjectStorage) -> list[str]:
    """A runner's arguments naming the bucket (its keys and CA come from the environment)."""
    args = ["--bucket", storage.bucket, "--prefix", storage.prefix]
    if storage.endpoint:
        args += ["--endpoint", storage.endpoint]
    if storage.region:
        args += ["--region", storage.region]
    if storage.force_path_style:
        args.append("--force-path-style")
    return args


def storage_access(storage: ObjectStorage) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A runner's S3 keys (from their Secret) and endpoint CA: (env, mounts, volumes)."""
    variables: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    creds = storage.credentials_secret_ref
    if creds is not None:
        variables += [_secret_env("AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key),
                      _secret_env("AWS_SECRET_ACCESS_KEY", creds.name,
                                  creds.secret_access_key_key)]
    if storage.endpoint_ca is not None:
        variables.append(s3ca.env())
        mounts.append(s3ca.mount())
        volumes.append(s3ca.volume(storage.endpoint_ca.name, storage.endpoint_ca.key))
    return variables, mounts, volumes


def _runner_args(policy_spec: BackupPolicySpec, t: EffectiveTenant) -> list[str]:
    storage = policy_spec.storage
    args = ["backup", "run", "--tenant", t.name, *storage_args(storage)]
    sse = storage.server_side_encryption
    if sse is not None:
        args += ["--sse", sse.algorithm.value]
        if sse.kms_key_id:
            args += ["--kms-key-id", sse.kms_key_id]
    targets = sorted(target.value for target in policy_spec.targets)
    args += ["--targets", ",".join(targets)]
    if policy_spec.dump_compression is DumpCompression.ZSTD:
        # Only when asked: gzip policies keep the argument list (and CronJob) they had.
        args += ["--dump-compression", "zstd"]
    if BackupTarget.CONFIGURATION in policy_spec.targets:
        args += ["--config-file", f"{CONFIG_MOUNT}/{CONFIG_FILE}"]
    if BackupTarget.GRAFANA_DASHBOARDS in policy_spec.targets and policy_spec.grafana:
        args += ["--grafana-url", policy_spec.grafana.url]
    # A database that refuses the first connection is asked again for a while:
    # the run may start while the primary restarts, or before the node's network
    # policy enforcer lets the new runner pod in (backoffLimit is 0: one run).
    args += ["--connect-wait-seconds", str(CONNECT_WAIT_SECONDS)]
    args += ["--termination-log", "/dev/termination-log"]
    return args


def _env(policy_spec: BackupPolicySpec, t: EffectiveTenant) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PGHOST", "value": f"postgres.{t.namespace}.svc"},
        {"name": "PGPORT", "value": str(POSTGRES_PORT)},
        {"name": "PGDATABASE", "value": t.postgres.database},
        _secret_env("PGUSER", POSTGRES_SECRET, POSTGRES_USER_KEY),
        _secret_env("PGPASSWORD", POSTGRES_SECRET, POSTGRES_PASSWORD_KEY),
    ]
    creds = policy_spec.storage.credentials_secret_ref
    if creds is not None:
        env += [
            _secret_env("AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key),
            _secret_env("AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key),
        ]
    if BackupTarget.GRAFANA_DASHBOARDS in policy_spec.targets and policy_spec.grafana:
        ref = policy_spec.grafana.api_token_secret_ref
        env.append(_secret_env("GRAFANA_TOKEN", ref.name, ref.key))
    if policy_spec.storage.endpoint_ca is not None:
        env.append(s3ca.env())
    return env


def _volumes(policy: str, policy_spec: BackupPolicySpec) -> tuple[
    list[dict[str, Any]], list[dict[str, Any]]
]:
    """(volumeMounts, volumes) of the runner container."""
    mounts: list[dict[str, Any]] = [
        {"name": "configuration", "mountPath": CONFIG_MOUNT, "readOnly": True},
        # A private emptyDir, not the node's /tmp.
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "configuration", "configMap": {"name": configuration_name(policy)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    ca = policy_spec.storage.endpoint_ca
    if ca is not None:
        mounts.append(s3ca.mount())
        volumes.append(s3ca.volume(ca.name, ca.key))
    return mounts, volumes


def job_template(policy: str, policy_spec: BackupPolicySpec, t: EffectiveTenant) -> dict[str, Any]:
    """The Job spec both the CronJob and on-demand runs use."""
    labels = {**_labels(policy, t.name), RUNNER_LABEL: "backup"}
    mounts, volumes = _volumes(policy, policy_spec)
    return {
        "metadata": {"labels": _labels(policy, t.name)},
        "spec": {
            # A failed backup is reported, not retried blindly: the next
            # scheduled (or on-demand) run is the retry.
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds(policy_spec),
            "template": {
                "metadata": {"labels": labels},
                "spec": runner_pod("backup", _runner_args(policy_spec, t),
                                   _env(policy_spec, t), mounts, volumes),
            },
        },
    }


# A run missed by more than this (control plane down, tenant suspended) is not
# started late by the CronJob controller.
STARTING_DEADLINE_SECONDS = 3600


def scheduled_runs_held(policy_spec: BackupPolicySpec, t: EffectiveTenant, *,
                        database_stopped: bool) -> bool:
    """Whether no run of the schedule may start now: the CronJob rests, and a run a
    suspend window swallowed is not made up either (one rule for both).

    The policy is suspended (``spec.suspend``: skip scheduled runs); the tenant's
    database is replaced or still being made (an in-place recovery, a bootstrap
    from a backup), when a dump would be of no database or of half of one, and
    would become the newest backup retention keeps; or it is stopped
    (``database_stopped``: suspended by spec.suspend or a window, or coming back)."""
    return policy_spec.suspend or t.writes_stopped or database_stopped


def cron_job(
    policy: str, namespace: str, policy_spec: BackupPolicySpec, t: EffectiveTenant,
    schedule: str, time_zone: str, *, database_stopped: bool = False, other_run: bool = False,
) -> Manifest:
    """``database_stopped``: the tenant is suspended (by spec.suspend or a
    window), or coming back from it: no run can reach its database.
    ``other_run``: a run the CronJob did not start (on demand, or one made up
    after a window) is under way."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": child_metadata(cron_job_name(policy), namespace, policy, t.name),
        "spec": {
            "schedule": schedule,
            "timeZone": time_zone,
            # A run missed meanwhile starts once it is back, within the starting
            # deadline below; one a suspend window swallowed, later, by the
            # operator (backup_catchup.py).
            "suspend": scheduled_runs_held(policy_spec, t, database_stopped=database_stopped)
                       or other_run,
            # Never two dumps of one database at once (of its own Jobs; the
            # others hold it suspended).
            "concurrencyPolicy": "Forbid",
            # A run missed by more than an hour (control plane down) is skipped;
            # BackupFresh then reports the gap.
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": job_template(policy, policy_spec, t),
        },
    }


def manual_job(
    policy: str, namespace: str, policy_spec: BackupPolicySpec, t: EffectiveTenant,
    request: str,
) -> Manifest:
    template = copy.deepcopy(job_template(policy, policy_spec, t))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **child_metadata(manual_job_name(policy, request), namespace, policy, t.name),
            "annotations": {BACKUP_NOW_ANNOTATION: request},
        },
        "spec": template["spec"],
    }
