"""Reconcile one DRDrill: start runs when due, drive the active run, record verdicts.

A run is a small state machine kept in ``status.activeRun``: its start is
written before anything is created, so a restarted operator continues the
same run (same sandbox name, same Job) instead of starting another. Scheduled
runs never flip Reconciling: they live under activeRun/lastResult.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from stackforge_operator import (
    API_GROUP,
    API_VERSION,
    config,
    image_catalog,
    kube,
    schedule,
    status,
)
from stackforge_operator.builders import credentials
from stackforge_operator.builders import drill as builders
from stackforge_operator.builders import secrets_names as names
from stackforge_operator.controller import WriteThenError
from stackforge_operator.drill.outcome import parse_result
from stackforge_operator.models import conditions as types
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.models.drill import (
    ActiveDrillRun,
    BackupMethod,
    BackupSource,
    CheckResult,
    DRDrillSpec,
    DRDrillStatus,
    DrillPhase,
    DrillResult,
    DrillRunSummary,
    DrillStep,
    Verdict,
)
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.pod_health import job_ended, pod_fault
from stackforge_operator.reconcile import drill_orphans, drill_recovery, storage
from stackforge_operator.reconcile.common import (
    post_transitions,
    referenced_tenant,
    status_changed,
    status_patch,
    termination_result,
)
from stackforge_operator.reconcile.diff import needs_apply
from stackforge_operator.reconcile.tenant_observe import validation_summary

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"
KIND = "DRDrill"
ACTIVE_SECONDS = 2.0
# A converged object is looked at again this often (S3 changes are no watch event).
IDLE_SECONDS = config.RESYNC_SECONDS
STALLED_SECONDS = config.STALLED_RECHECK_SECONDS
WAITING_SECONDS = 5.0
# The scratch database is the run's own: made once, never changed while the run
# lasts. Re-rendered from a drill whose sandbox settings changed mid-run (or
# from a new image catalog) it would replace the pod and start its restore over.
RUN_FIXED_KINDS = frozenset({"Service", "StatefulSet"})
# Applies a new sandbox's objects of one wave at once (_make); shared by every
# drill's reconciles, which the workers run side by side.
_APPLIERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="drill-sandbox")
# While a run's Job works, its sandbox is looked over (each object read, and
# applied where missing or changed: the S3 endpoint's addresses in the
# NetworkPolicy, the copies of the policy's Secrets) this often, not at every
# pass: a pass in between reads the Job alone. At every pass it was some twenty
# requests every ACTIVE_SECONDS for as long as a restore takes (hours, for a
# large database).
REPAIR_SECONDS = 30.0
# When this process last looked over each active run's sandbox (monotonic
# seconds, by sandbox namespace). A restarted operator, or a new leader, looks
# over at its first pass. Entries of runs no longer driven (a drill deleted
# mid-run) go after STALE_REPAIR_SECONDS.
STALE_REPAIR_SECONDS = 3600.0
_repaired: dict[str, float] = {}
_repaired_lock = threading.Lock()


def _repair_due(sandbox: str) -> bool:
    with _repaired_lock:
        last = _repaired.get(sandbox)
    return last is None or time.monotonic() - last >= REPAIR_SECONDS


def _looked_over(sandbox: str | None, *, done: bool = False) -> None:
    """Note a sandbox looked over now (``done``: its run is over, forget it)."""
    now = time.monotonic()
    with _repaired_lock:
        for stale in [s for s, at in _repaired.items() if now - at > STALE_REPAIR_SECONDS]:
            del _repaired[stale]
        if sandbox is not None:
            if done:
                _repaired.pop(sandbox, None)
            else:
                _repaired[sandbox] = now


@dataclass(frozen=True)
class Outcome:
    requeue_after: float
    latest: dict[str, Any] | None = None


class _DeletedMidRunError(Exception):
    """The drill went while its run's first pass made the sandbox (deleted, now)."""


def reconcile(body: Mapping[str, Any]) -> Outcome:
    # The policy's Secrets are checked, then copied into a new sandbox: read once.
    with kube.one_read_per_secret():
        try:
            return _reconcile(body)
        except _DeletedMidRunError:
            return Outcome(STALLED_SECONDS)


def _reconcile(body: Mapping[str, Any]) -> Outcome:
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    old = DRDrillStatus.model_validate(body.get("status") or {})
    now = datetime.now(UTC)
    try:
        spec = DRDrillSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        _expire_own_sandbox(old.active_run, now)
        return _stalled(body, old, "InvalidSpec", validation_summary(error))
    found = _references(spec, namespace)
    if isinstance(found, status.Problem):
        return _stalled_run(body, spec, old, now, found)
    t, policy, policy_body = found
    if not spec.once and (why := schedule.problem(*_schedule(spec, t), now)) is not None:
        # Else the first run went ahead and every pass after it raised, unseen.
        return _stalled_run(body, spec, old, now, status.Problem(
            "InvalidSchedule", f"spec.schedule/spec.timeZone (or the tenant's drill "
                               f"schedule): {why}"))
    # The restore Job gets copies of the policy's Secrets: they must be there.
    problems = storage.storage_problems(policy.storage, namespace) + _cipher_problems(
        spec, policy, namespace)
    if problems:
        return _stalled_run(body, spec, old, now, status.Problem(
            problems[0].reason, "; ".join(p.message for p in problems)))
    _sweep(namespace, old.active_run, now)

    new = old.model_copy(deep=True)
    active = new.active_run
    due = active is None and _due(spec, t, old, now)
    physical: builders.PhysicalSource | None = None
    if due and spec.backup.method == BackupMethod.PHYSICAL:
        point = (spec.backup.point_in_time
                 if spec.backup.source == BackupSource.POINT_IN_TIME else None)
        chosen = drill_recovery.physical_source(
            point, policy_body["metadata"]["name"], policy, _policy_status(policy_body),
            field="spec.backup.pointInTime", what="the drill's run", now=now)
        if isinstance(chosen, drill_recovery.Refusal):
            # Nothing is created for a run that could only fail.
            return _held(body, old, chosen.progress, chosen.reason, chosen.message)
        physical = chosen
    elif due and (waiting := _without_backup(spec, policy_body)) is not None:
        # A run now could only fail: there is nothing to restore yet.
        return _reconciling(body, old, "WaitingForBackup", waiting)
    if due and (kept := _retained_volumes(spec)) is not None:
        # Nothing is created: each run would leave a copy of the tenant's data.
        return _stalled(body, old, "SandboxVolumesRetained", kept)
    if due:
        run_id = now.strftime("%Y%m%dT%H%M%SZ")
        active = ActiveDrillRun(
            run_id=run_id, start_time=now, step=DrillStep.CREATING_SANDBOX,
            backup_id=None if physical else _backup_argument(spec),
            recovery_target=physical.target if physical else None,
            repository_path=physical.repository_path if physical else None,
            sandbox_namespace=builders.sandbox_name(
                name, run_id, str(meta.get("uid") or f"{namespace}/{name}")))
        new.active_run = active
        new.phase = DrillPhase.RUNNING
        # Recorded before anything exists, so a restart continues this very run;
        # only over the status this pass read: two replicas both active for a
        # moment (kopf's peering is no lock) each started a run, and the second
        # write left the first run's sandbox named by nothing until its TTL.
        started = _write(body, old, new, guarded=True)
        body = started or body
        old = new.model_copy(deep=True)
    else:
        started = None
    try:
        if active is not None:
            _drive(body, spec, t, policy, new, now, fresh=due)
        new.observed_generation = int(meta.get("generation", 0))
        new.conditions = _conditions(old, new, now, suspended=spec.suspend)
        # The body that records a run's start is the one to hold even when nothing
        # more is written: held without it, a next pass ahead of the watch's echo
        # would start a second run.
        latest = _write(body, old, new) or started
    except _DeletedMidRunError:
        raise
    except Exception as error:
        if started is None:
            raise
        # The run's start is written: the retry must start from it.
        raise WriteThenError(error, started) from error
    _remove_ended_sandbox(spec, active, new)
    if new.active_run is not None:
        return Outcome(ACTIVE_SECONDS, latest)
    return Outcome(_until_next(spec, t, new, now), latest)


# -- references and scheduling ------------------------------------------------------


def _references(
    spec: DRDrillSpec, namespace: str
) -> tuple[EffectiveTenant, BackupPolicySpec, Mapping[str, Any]] | status.Problem:
    found = referenced_tenant(spec.tenant_ref.name, namespace)
    if isinstance(found, status.Problem):
        return found
    t, _ = found
    if spec.backup_policy_ref is not None:
        policies = [p for p in [kube.get(API, "BackupPolicy", spec.backup_policy_ref.name,
                                         namespace)] if p is not None]
    else:
        policies = [p for p in kube.list_objects(API, "BackupPolicy", namespace=namespace)
                    if p["spec"]["tenantRef"]["name"] == t.name]
    if len(policies) != 1:
        what = (f"BackupPolicy {spec.backup_policy_ref.name}" if spec.backup_policy_ref
                else f"exactly one BackupPolicy of tenant {t.name}")
        return status.Problem("BackupPolicyNotFound",
                              f"spec.backupPolicyRef: {what} must exist in {namespace}")
    return t, BackupPolicySpec.model_validate(policies[0]["spec"]), policies[0]


def _retained_volumes(spec: DRDrillSpec) -> str | None:
    """Why the sandbox's storage class may not hold a run's restored database, or None.

    The sandbox's claim goes with it, but a class whose reclaimPolicy is not
    Delete (Retain, common for databases) keeps the volume, Released, with the
    whole restored copy on it: one more after every run, found by nobody."""
    name = spec.sandbox.storage_class_name
    if name is None:
        return None
    found = kube.get("storage.k8s.io/v1", "StorageClass", name)
    if found is None:
        return (f"spec.sandbox.storageClassName: StorageClass {name} does not exist")
    policy = found.get("reclaimPolicy") or "Delete"
    if policy != "Delete":
        return (f"spec.sandbox.storageClassName: StorageClass {name} has reclaimPolicy "
                f"{policy}, which keeps every run's volume and its restored copy of the "
                "tenant's data after the sandbox is gone: name a class that deletes them")
    return None


def _policy_status(policy: Mapping[str, Any]) -> BackupPolicyStatus:
    try:
        return BackupPolicyStatus.model_validate(policy.get("status") or {})
    except ValidationError:
        # Not what this operator writes: as good as no status yet.
        return BackupPolicyStatus()


def _cipher_problems(spec: DRDrillSpec, policy: BackupPolicySpec,
                     namespace: str) -> list[status.Problem]:
    """A Physical drill's restore reads the repository's passphrase: it must be there."""
    archive = policy.continuous_archiving
    if spec.backup.method != BackupMethod.PHYSICAL or archive is None:
        return []
    ref = archive.repository_cipher_secret_ref
    return storage.secret_problems([storage.SecretKeys(
        "spec.continuousArchiving.repositoryCipherSecretRef", ref.name, (ref.key,))], namespace)


def _without_backup(spec: DRDrillSpec, policy: Mapping[str, Any]) -> str | None:
    """Why no run can start yet: the policy has no complete backup to restore.

    Only for the newest backup or a point in time: a backup named by id may be
    one an earlier policy of that name made, which only the restore can look for.
    """
    if spec.backup.source == BackupSource.BY_ID:
        return None
    if ((policy.get("status") or {}).get("lastSuccessfulRun") or {}).get("id"):
        return None
    return (f"BackupPolicy {policy['metadata']['name']} has no complete backup yet; "
            "the drill starts after its first one")


def _backup_argument(spec: DRDrillSpec) -> str:
    if spec.backup.source == BackupSource.BY_ID and spec.backup.id:
        return spec.backup.id
    if spec.backup.source == BackupSource.POINT_IN_TIME and spec.backup.point_in_time:
        return f"before={spec.backup.point_in_time.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return "latest"


def _last_start(old: DRDrillStatus) -> datetime | None:
    starts = [r.start_time for r in [old.last_result, *old.history] if r and r.start_time]
    return max(starts, default=None)


def _schedule(spec: DRDrillSpec, t: EffectiveTenant) -> tuple[str, str]:
    return spec.schedule or t.drill_schedule, spec.time_zone or t.drill_time_zone


def _due(spec: DRDrillSpec, t: EffectiveTenant, old: DRDrillStatus, now: datetime) -> bool:
    if spec.suspend:
        return False
    last = _last_start(old)
    if last is None:
        return True  # every drill runs once when created
    if spec.once:
        return False
    when, zone = _schedule(spec, t)
    # A wall time the clocks repeat counts once: not a second full restore an hour
    # after the first, the night they go back.
    return schedule.next_distinct_fire(when, zone, last) <= now


def _until_next(spec: DRDrillSpec, t: EffectiveTenant, new: DRDrillStatus,
                now: datetime) -> float:
    last = _last_start(new)
    if spec.once or spec.suspend or last is None:
        return IDLE_SECONDS
    when, zone = _schedule(spec, t)
    seconds = (schedule.next_distinct_fire(when, zone, last) - now).total_seconds()
    return min(IDLE_SECONDS, max(0.5, seconds))


# -- the active run ---------------------------------------------------------------------


def _drive(body: Mapping[str, Any], spec: DRDrillSpec, t: EffectiveTenant,
           policy: BackupPolicySpec, new: DRDrillStatus, now: datetime, *,
           fresh: bool = False) -> None:
    """One step of the active run; ``fresh``: it was started by this very reconcile."""
    active = new.active_run
    assert active is not None and active.sandbox_namespace is not None
    meta = body["metadata"]
    drill, namespace, sandbox = meta["name"], meta["namespace"], active.sandbox_namespace
    expires = active.start_time + timedelta(seconds=spec.sandbox.ttl_seconds)
    job = None if fresh else kube.get("batch/v1", "Job", builders.JOB, sandbox)
    # A Job that has ended holds the run's verdict, even when it is read only
    # after the TTL (the operator was down, or leadership moved, meanwhile).
    if job is not None and job_ended(job):
        _follow_job(body, spec, new, job, now)
        return
    if now > expires:
        _finish(body, spec, new, {"verdict": "Failed", "reason": "Timeout",
                                  "message": f"no verdict within {spec.sandbox.ttl_seconds}s"},
                now)
        return
    if not fresh:
        # A logical drill's Job waits for the scratch database to be Ready; a
        # physical drill's runner waits for its answer: either would wait until
        # the TTL, and then say only "Timeout".
        failed = scratch_failure(kube.get("v1", "Pod", f"{builders.SCRATCH}-0", sandbox))
        if failed is not None:
            _finish(body, spec, new, failed, now)
            return
    if job is not None and not _repair_due(sandbox):
        _follow_job(body, spec, new, job, now)
        return
    live_secret = None if fresh else kube.get("v1", "Secret", builders.SCRATCH_SECRET, sandbox)
    password = credentials.decode(live_secret).get("password") if live_secret else None
    s3_keys = _s3_keys(policy, namespace)
    s3_ca = storage.ca_bundle(policy.storage, namespace)
    physical = (builders.PhysicalSource(active.repository_path, active.recovery_target)
                if active.repository_path and active.recovery_target else None)
    if physical is None:
        scratch_objects = builders.scratch_database(sandbox, drill, namespace, t,
                                                    spec.sandbox)
    else:
        scratch_objects = builders.restored_database(
            sandbox, drill, namespace, t, box=spec.sandbox, storage=policy.storage,
            source=physical, app_user=_app_user(t))
    try:
        isolation = builders.network_policy(
            sandbox, drill, namespace, t.namespace, policy.storage.endpoint,
            storage.endpoint_addresses(policy.storage.endpoint))
    except ValueError as error:  # an endpoint whose port no policy can hold
        _finish(body, spec, new, {"verdict": "Failed", "reason": "InvalidStorage",
                                  "message": str(error)}, now)
        return
    children = [
        builders.namespace(sandbox, drill, namespace, expires, meta.get("uid")),
        isolation,
        *builders.secrets(sandbox, drill, namespace, password or secrets.token_urlsafe(24),
                          s3_keys, s3_ca, _cipher_passphrase(policy, namespace, physical)),
        *builders.pull_secret_copies(sandbox, drill, namespace, _pull_secrets(namespace)),
        *scratch_objects,
        builders.runner_account(sandbox, drill, namespace),
        builders.checks_config(sandbox, drill, namespace, spec),
    ]
    # A run started by this reconcile has a sandbox of a new name: nothing of it
    # exists, so it is made without reading any of it first, in waves of what
    # may be made at once (builders.sandbox_waves). A physical restore starts
    # with the scratch pod, so every request made before it is part of the RTO.
    if fresh:
        try:
            live = _make(children)
        except _SandboxTakenError as taken:
            _finish(body, spec, new, {"verdict": "Failed", "reason": "SandboxTaken",
                                      "message": str(taken)}, now)
            return
        finally:
            # Told once the sandbox is made, not before: a physical restore
            # starts with its pod, and every request before that is RTO.
            what = (f"{active.repository_path} to {active.recovery_target}"
                    if physical else active.backup_id)
            kube.record_event(dict(body), "Normal", "DrillStarted",
                              f"run {active.run_id} restores {what} in {sandbox}")
        if not drill_orphans.drill_exists(namespace, drill, meta.get("uid")):
            # Its deletion's sweep (handlers.py) may have looked before the
            # sandbox existed: a restored copy of the tenant's data would stay
            # until the periodic sweep.
            kube.delete("v1", "Namespace", sandbox)
            logger.info("drill %s/%s was deleted while its sandbox %s was made: deleted it",
                        namespace, drill, sandbox)
            raise _DeletedMidRunError
    else:
        live = _repair(children)
    _looked_over(sandbox)
    scratch = (live.get(f"StatefulSet/{builders.SCRATCH}") or {}).get("status") or {}
    if job is None:
        # A dump is restored into a running scratch database: wait for it. A
        # physical restore is the scratch pod's own work, and its runner waits
        # for the database itself: started with it, its pod's start and the
        # runner's overlap the restore instead of adding to the RTO.
        if physical is None and int(scratch.get("readyReplicas") or 0) < 1:
            return  # the scratch database is still starting
        objectives = spec.objectives
        rto = (objectives.rto_seconds if objectives and objectives.rto_seconds else
               t.rto_seconds)
        rpo = (objectives.rpo_seconds if objectives and objectives.rpo_seconds else
               t.rpo_seconds)
        kube.apply(builders.restore_job(
            sandbox, drill, namespace, spec, t,
            storage=policy.storage.model_dump(mode="json", by_alias=True, exclude_none=True),
            backup_id=active.backup_id or "latest",
            started_at=active.start_time, rto_seconds=rto, rpo_seconds=rpo,
            with_s3_keys=bool(s3_keys), with_s3_ca=s3_ca is not None, physical=physical))
        active.step = DrillStep.RESTORING
        active.job_name = builders.JOB
        kube.record_event(dict(body), "Normal", "RestoreStarted",
                          f"run {active.run_id}: restoring into {sandbox}")
        return
    _follow_job(body, spec, new, job, now)


# Pod faults no retry ends. A pull that failed (a registry's timeout or rate
# limit) or a Secret not there yet may well pass at the kubelet's next try:
# those are left to the TTL.
_NEVER_STARTS = frozenset({"InvalidImageName", "ErrImageNeverPull"})


def scratch_failure(pod: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A failed run's result when the scratch database cannot come up by itself:
    its server stopped with an error (a restore or replay that failed, killed
    out of memory; a healthy one never stops during a run), or its image can
    never run (a name that is no image's). None otherwise (starting,
    restoring, waiting for a node or for an image pull's next try)."""
    if pod is None:
        return None
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") != builders.SCRATCH_SERVER_CONTAINER:
            continue
        stopped = ((container.get("state") or {}).get("terminated")
                   or (container.get("lastState") or {}).get("terminated") or {})
        if stopped.get("exitCode") not in (None, 0):
            # Its log's tail, as the kubelet kept it (FallbackToLogsOnError).
            tail = str(stopped.get("message") or "").strip()
            return {"verdict": "Failed", "reason": "ScratchDatabaseFailed",
                    "message": f"the scratch database's server stopped "
                               f"({stopped.get('reason') or 'Error'}, exit code "
                               f"{stopped['exitCode']}): the restore or the server failed; "
                               f"its log's tail is in restoreLogTail",
                    **({"restoreLogTail": tail} if tail else {})}
    fault = pod_fault(pod)
    if fault is not None and fault.reason in _NEVER_STARTS:
        return {"verdict": "Failed", "reason": "ScratchDatabaseFailed",
                "message": f"the scratch database cannot start: {fault.describe()}"}
    return None


def _follow_job(body: Mapping[str, Any], spec: DRDrillSpec, new: DRDrillStatus,
                job: Mapping[str, Any], now: datetime) -> None:
    """The active run's step from its Job; its verdict once the Job has ended."""
    active = new.active_run
    assert active is not None and active.sandbox_namespace is not None
    if not job_ended(job):
        active.step = DrillStep.VERIFYING if active.step == DrillStep.VERIFYING else (
            DrillStep.RESTORING)
        return
    result = termination_result(active.sandbox_namespace, builders.JOB, parse_result)
    if not result:
        result = {"verdict": "Failed", "reason": "RunnerFailed",
                  "message": "the restore Job ended without a result"}
    _finish(body, spec, new, result, now)


def _key(child: Mapping[str, Any]) -> str:
    return f"{child['kind']}/{child['metadata']['name']}"


class _SandboxTakenError(Exception):
    """The sandbox's namespace existed before its run began: someone else's."""


def _make(children: list[dict[str, Any]]) -> dict[str, Any]:
    """A new sandbox's objects, each wave's applied at once; the applied objects by key.

    Its name can be foretold (the drill's uid and the schedule's second): where
    people may make namespaces, one made beforehand, with a RoleBinding of its
    maker's, was taken over by an apply and handed the bucket's keys and the
    restored data by the waves after it. The namespace (the first wave, alone)
    is created, not applied: one that exists already is someone else's, and
    nothing more goes into it (_SandboxTakenError). A pass that made it and
    died is followed by one that repairs (_repair), not by this."""
    live: dict[str, Any] = {}
    for wave in builders.sandbox_waves(children):
        if [child["kind"] for child in wave] == ["Namespace"]:
            [namespace] = wave
            created = kube.create(namespace)
            if created is None:
                raise _SandboxTakenError(
                    f"namespace {namespace['metadata']['name']} existed before the run "
                    "made it: someone else's, so nothing of the run went into it")
            live[_key(namespace)] = created
            continue
        # map() raises the first failure once the wave is done; the next pass
        # (not fresh then) repairs what is missing. (The same objects as
        # _repair's: tests/unit/test_manifests.py accounts their kinds there.)
        for child, applied in zip(wave, _APPLIERS.map(kube.apply, wave), strict=True):
            live[_key(child)] = applied
    return live


def _repair(children: list[dict[str, Any]]) -> dict[str, Any]:
    """An existing sandbox's objects: each read, and applied where missing or changed
    (not the kinds a run keeps as it made them)."""
    live: dict[str, Any] = {}
    for child in children:
        current = kube.get(child["apiVersion"], child["kind"], child["metadata"]["name"],
                           child["metadata"].get("namespace"))
        if current is None or (child["kind"] not in RUN_FIXED_KINDS
                               and needs_apply(child, current)):
            current = kube.apply(child)
        live[_key(child)] = current
    return live


def _s3_keys(policy: BackupPolicySpec, namespace: str) -> dict[str, str]:
    """The policy's S3 keys, copied into the sandbox (a Job cannot reference another namespace)."""
    creds = policy.storage.credentials_secret_ref
    if creds is None:
        return {}
    data = credentials.decode(kube.get("v1", "Secret", creds.name, namespace) or {})
    return {builders.S3_KEY_ID_KEY: data.get(creds.access_key_id_key, ""),
            builders.S3_SECRET_KEY_KEY: data.get(creds.secret_access_key_key, "")}


def _cipher_passphrase(policy: BackupPolicySpec, namespace: str,
                       physical: builders.PhysicalSource | None) -> str | None:
    """The repository's passphrase, for a Physical run's copy in its sandbox."""
    archive = policy.continuous_archiving
    if physical is None or archive is None:
        return None
    ref = archive.repository_cipher_secret_ref
    return credentials.decode(kube.get("v1", "Secret", ref.name, namespace) or {}).get(ref.key)


def _app_user(t: EffectiveTenant) -> str:
    """The application role's name, as the tenant's credentials Secret says."""
    secret = kube.get("v1", "Secret", names.POSTGRES_SECRET, t.namespace) or {}
    return credentials.decode(secret).get(names.POSTGRES_USER_KEY) or names.POSTGRES_APP_USER


def _pull_secrets(namespace: str) -> dict[str, dict[str, Any]]:
    """The image catalog's pull secrets as found in the drill's (the tenant's) namespace.

    The sandbox's pods name them in ``imagePullSecrets`` like every pod the
    operator creates; one missing here is missing for the tenant's pods too,
    and the runtime then pulls without it.
    """
    found = {}
    for name in image_catalog.current().image_pull_secrets:
        if name in builders.OWN_SECRETS:
            logger.warning("pull secret %s not copied into drill sandboxes: the sandbox has "
                           "a Secret of its own by that name", name)
            continue
        secret = kube.get("v1", "Secret", name, namespace)
        if secret is not None:
            found[name] = secret
    return found


def _checks(result: Mapping[str, Any]) -> list[CheckResult]:
    out = []
    for check in result.get("checks") or []:
        try:
            out.append(CheckResult.model_validate(check))
        except ValidationError:
            continue
    return out


def _finish(body: Mapping[str, Any], spec: DRDrillSpec, new: DRDrillStatus,
            result: Mapping[str, Any], now: datetime) -> None:
    active = new.active_run
    assert active is not None
    verdict = Verdict.PASSED if result.get("verdict") == "Passed" else Verdict.FAILED
    outcome = DrillResult(
        run_id=active.run_id,
        verdict=verdict,
        reason=None if verdict == Verdict.PASSED else str(result.get("reason") or "Failed")[:128],
        message=str(result.get("message") or "")[:4096] or None,
        start_time=active.start_time,
        completion_time=now,
        backup_id=result.get("backupId") or active.backup_id,
        backup_location=result.get("backupLocation"),
        recovery_target=result.get("recoveryTarget") or active.recovery_target,
        recovery_point_time=result.get("recoveryPointTime"),
        rto_seconds=result.get("rtoSeconds"),
        rpo_seconds=result.get("rpoSeconds"),
        rto_objective_seconds=result.get("rtoObjectiveSeconds"),
        rpo_objective_seconds=result.get("rpoObjectiveSeconds"),
        rto_met=result.get("rtoMet"),
        rpo_met=result.get("rpoMet"),
        checks=_checks(result),
        report_location=result.get("reportLocation"),
        restore_log_tail=(str(result["restoreLogTail"])[-4096:]
                          if result.get("restoreLogTail") else None),
    )
    summary = DrillRunSummary.model_validate(outcome.model_dump(
        include=set(DrillRunSummary.model_fields)))
    new.last_result = outcome
    new.history = [summary, *new.history][: spec.history_limit]
    new.active_run = None
    new.phase = DrillPhase.PASSED if verdict == Verdict.PASSED else DrillPhase.FAILED
    # The sandbox goes once the verdict is written (_remove_ended_sandbox): were
    # it gone first and the write failed, the next pass would find the run
    # still active, its Job gone, and make the whole sandbox again.
    _looked_over(active.sandbox_namespace, done=True)
    if verdict == Verdict.PASSED:
        kube.record_event(dict(body), "Normal", "DrillPassed",
                          f"run {active.run_id} passed: RTO {outcome.rto_seconds}s, "
                          f"RPO {outcome.rpo_seconds}s")
    else:
        kube.record_event(dict(body), "Warning", outcome.reason or "DrillFailed",
                          f"run {active.run_id} failed: {outcome.message or ''}")


def _expire_own_sandbox(active: ActiveDrillRun | None, now: datetime) -> None:
    """A drill whose spec the models refuse (one the CRD admits: an operator rolled
    back, say) cannot end its run, and every sweep spares the sandbox its run
    names: the copy of the data and the bucket's keys stayed until the spec was
    mended. Past the expiry written on it at its making, it goes; the run ends
    (Timeout) once the spec can be read again."""
    if active is None or not active.sandbox_namespace:
        return
    sandbox = kube.get("v1", "Namespace", active.sandbox_namespace)
    if sandbox is None or sandbox["metadata"].get("deletionTimestamp"):
        return
    expires = (sandbox["metadata"].get("annotations") or {}).get(builders.EXPIRES_ANNOTATION)
    if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
        kube.delete("v1", "Namespace", active.sandbox_namespace)
        logger.info("drill run's sandbox %s expired while its drill's spec is invalid: "
                    "deleted", active.sandbox_namespace)


def _sweep(namespace: str, active: ActiveDrillRun | None, now: datetime) -> None:
    """Delete expired sandboxes of this namespace's drills (kept failures, lost runs).

    Never one that a drill of the namespace still names as its run: past its TTL
    (its operator away meanwhile), that drill reads its Job's verdict from it
    first, then deletes it itself. Another drill's sweep took it first, and the
    run that had passed was recorded as lost."""
    running = {active.sandbox_namespace} if active is not None else set()
    for drill_body in kube.list_objects(API, "DRDrill", namespace=namespace):  # (watch cache)
        run = ((drill_body.get("status") or {}).get("activeRun") or {})
        running.add(run.get("sandboxNamespace"))
    for sandbox in kube.list_objects("v1", "Namespace",
                                     label_selector=f"{builders.DRILL_NAMESPACE_LABEL}={namespace}"):
        name = sandbox["metadata"]["name"]
        if name in running:
            continue
        if sandbox["metadata"].get("deletionTimestamp"):
            continue
        expires = (sandbox["metadata"].get("annotations") or {}).get(builders.EXPIRES_ANNOTATION)
        if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= now:
            kube.delete("v1", "Namespace", name)


# -- status ------------------------------------------------------------------------------


def _conditions(old: DRDrillStatus, new: DRDrillStatus, now: datetime, *,
                suspended: bool) -> list[Any]:
    rollup, observations = _observations(new, suspended=suspended)
    generation = new.observed_generation or 0
    return status.merge(old.conditions, [*rollup, *observations], generation=generation, now=now)


def _observations(new: DRDrillStatus, *, suspended: bool
                  ) -> tuple[list[status.Observation], list[status.Observation]]:
    """(the rollup, the drill's own conditions) that ``new`` reads as."""
    result = new.last_result
    observations: list[status.Observation] = []
    if result is None:
        observations.append(status.Observation(types.LAST_DRILL_PASSED, ConditionStatus.UNKNOWN,
                                               "NoRunYet", "no drill has finished yet"))
        rollup = (status.rollup(status.Progress.READY, "Suspended",
                                "spec.suspend is set: no drill starts")
                  if suspended and new.active_run is None else
                  status.rollup(status.Progress.READY, "Scheduled", "the first drill is running"))
    else:
        passed = result.verdict == Verdict.PASSED
        observations.append(status.Observation(
            types.LAST_DRILL_PASSED, ConditionStatus.TRUE if passed else ConditionStatus.FALSE,
            "Passed" if passed else (result.reason or "Failed"),
            f"run {result.run_id}: {result.message or result.verdict.value}"))
        met = result.rto_met is not False and result.rpo_met is not False
        observations.append(status.Observation(
            types.OBJECTIVES_MET, ConditionStatus.TRUE if met else ConditionStatus.FALSE,
            "ObjectivesMet" if met else "ObjectivesMissed",
            f"RTO {result.rto_seconds}s (objective {result.rto_objective_seconds}s), "
            f"RPO {result.rpo_seconds}s (objective {result.rpo_objective_seconds}s)"))
        rollup = (status.rollup(status.Progress.READY, "DrillPassed", f"run {result.run_id} passed")
                  if passed else
                  status.rollup(status.Progress.STALLED, result.reason or "DrillFailed",
                                f"run {result.run_id} failed: {result.message or ''}"))
    return rollup, observations


def _stalled_run(body: Mapping[str, Any], spec: DRDrillSpec, old: DRDrillStatus,
                 now: datetime, problem: status.Problem) -> Outcome:
    """Stalled on what the drill names (its tenant, its policy or a Secret gone).

    A run under way cannot go on without them, but its TTL still holds: once it
    has passed, the run fails and its sandbox, which holds a copy of the
    tenant's data and of the bucket's keys, is deleted; so are the
    namespace's other expired sandboxes. Until then the run is kept, as a
    Secret may be back soon (a rotation). A Job that has ended gives the run's
    verdict all the same: reading it needs none of what is missing.
    """
    _sweep(body["metadata"]["namespace"], old.active_run, now)
    active = old.active_run
    if active is None:
        return _stalled(body, old, problem.reason, problem.message)
    job = kube.get("batch/v1", "Job", builders.JOB, active.sandbox_namespace) \
        if active.sandbox_namespace else None
    ttl = spec.sandbox.ttl_seconds
    left = (active.start_time + timedelta(seconds=ttl) - now).total_seconds()
    new = old.model_copy(deep=True)
    if job is not None and job_ended(job):
        # Its verdict needs none of what is missing: read it, as _drive would
        # (a Secret recreated by a rotation meanwhile cost a run that passed).
        _follow_job(body, spec, new, job, now)
    elif left >= 0:
        outcome = _stalled(body, old, problem.reason, problem.message)
        return Outcome(min(outcome.requeue_after, left + 1), outcome.latest)
    else:
        _finish(body, spec, new, {"verdict": "Failed", "reason": "Timeout",
                                  "message": f"no verdict within {ttl}s: {problem.message}"},
                now)
    generation = int(body["metadata"].get("generation", 0))
    new.observed_generation = generation
    # One merge against the old conditions: merging the stall over the run's own
    # rollup flipped Ready twice, and its lastTransitionTime moved though Ready
    # had been False all along.
    _, observations = _observations(new, suspended=spec.suspend)
    new.conditions = status.merge(
        old.conditions,
        [*status.rollup(status.Progress.STALLED, problem.reason, problem.message),
         *observations],
        generation=generation, now=now)
    latest = _write(body, old, new)
    _remove_ended_sandbox(spec, active, new)
    return Outcome(STALLED_SECONDS, latest)


def _remove_ended_sandbox(spec: DRDrillSpec, active: ActiveDrillRun | None,
                          new: DRDrillStatus) -> None:
    """After the status write: the sandbox of the run that ``new`` ended, unless a
    failed run's is kept (``keepOnFailure``). A process that dies between the
    write and this leaves it to the sweep, which removes sandboxes no drill's
    active run names once they are past their TTL."""
    if active is None or new.active_run is not None or not active.sandbox_namespace:
        return
    result = new.last_result
    if result is None or result.run_id != active.run_id:
        return
    if result.verdict == Verdict.FAILED and spec.sandbox.keep_on_failure:
        return
    kube.delete("v1", "Namespace", active.sandbox_namespace)


def _stalled(body: Mapping[str, Any], old: DRDrillStatus, reason: str, message: str) -> Outcome:
    return _held(body, old, status.Progress.STALLED, reason, message)


def _reconciling(body: Mapping[str, Any], old: DRDrillStatus, reason: str,
                 message: str) -> Outcome:
    return _held(body, old, status.Progress.RECONCILING, reason, message)


def _held(body: Mapping[str, Any], old: DRDrillStatus, progress: status.Progress,
          reason: str, message: str) -> Outcome:
    """No run started: the rollup says why, everything else in status stays."""
    generation = int(body["metadata"].get("generation", 0))
    new = old.model_copy(update={
        "observed_generation": generation,
        "conditions": status.merge(old.conditions, status.rollup(progress, reason, message),
                                   generation=generation, now=datetime.now(UTC)),
    })
    # Waiting (for a backup, for the archive to pass a target) ends by itself:
    # looked at again soon. Stalled needs a change, which a watch event brings.
    again = WAITING_SECONDS if progress is status.Progress.RECONCILING else STALLED_SECONDS
    return Outcome(again, _write(body, old, new))


def _write(body: Mapping[str, Any], old: DRDrillStatus,
           new: DRDrillStatus, *, guarded: bool = False) -> dict[str, Any] | None:
    """``guarded``: only if the drill is still at the version ``body`` was (a 409,
    retried from a fresh body, otherwise)."""
    if not status_changed(body, old, new):
        return None
    meta = body["metadata"]
    latest = kube.patch_status(
        API, KIND, meta["name"], meta.get("namespace"), status_patch(new),
        resource_version=str(meta.get("resourceVersion") or "") or None if guarded else None)
    post_transitions(body, old, new)
    return latest
