"""Reconcile one BackupPolicy: its CronJob, on-demand runs, and the truth from S3.

The bucket is the source of truth: a run counts as a backup only when its
manifest exists (the runner writes it last). Jobs tell what is running and
why a run failed; a Job that succeeded without leaving a manifest is a
failure too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from stackforge_operator import (
    API_GROUP,
    API_VERSION,
    backup_catchup,
    clock,
    config,
    kube,
    primary_metrics,
    schedule,
    status,
    suspend_windows,
)
from stackforge_operator.backup.housekeeping import apply_retention
from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.backup.runner import parse_result
from stackforge_operator.backup.store import BackupStore
from stackforge_operator.builders import archiving, backup_network, credentials, postgres, stack
from stackforge_operator.builders import backup as builders
from stackforge_operator.builders.archiving import BackupRequest
from stackforge_operator.models import conditions as types
from stackforge_operator.models.backup import (
    ArchiveStatus,
    BackupPolicySpec,
    BackupPolicyStatus,
    BackupRun,
    BackupTarget,
    PhysicalBackup,
    PhysicalBackupRequest,
    PhysicalBackupsStatus,
    RunResult,
)
from stackforge_operator.models.common import ConditionStatus
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import StackForgeTenantSpec, SuspendWindow
from stackforge_operator.reconcile import (
    archive_status,
    archiving_policy,
    backup_location,
    physical_backups,
    restore_holds,
    storage,
)
from stackforge_operator.reconcile.common import (
    TENANT_NOT_FOUND,
    TENANT_NOT_PLACED,
    post_transitions,
    referenced_tenant,
    status_changed,
    status_patch,
    termination_result,
)
from stackforge_operator.reconcile.diff import needs_apply, stamped
from stackforge_operator.reconcile.tenant_observe import backup_policies, validation_summary

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"
KIND = "BackupPolicy"
# How late the run owed after the newest complete backup may finish (schedule.staleness_limit).
GRACE = timedelta(seconds=float(os.environ.get("STACKFORGE_BACKUP_GRACE_SECONDS", "7200")))
# How late the CronJob controller still starts a fire it missed.
STARTING_DEADLINE = timedelta(seconds=builders.STARTING_DEADLINE_SECONDS)
ACTIVE_SECONDS = 5.0
# How soon a policy holding a physical backup for a restore looks again.
HELD_SECONDS = 30.0
# How soon a policy looks again while its tenant comes back from a suspend window.
RESUMING_SECONDS = 15.0
# A converged object is looked at again this often (S3 changes are no watch event).
IDLE_SECONDS = config.RESYNC_SECONDS
STALLED_SECONDS = config.STALLED_RECHECK_SECONDS
# Ended Jobs of runs on demand kept for their record, as the CronJob keeps 3.
ON_DEMAND_JOBS_KEPT = 3


@dataclass(frozen=True)
class Outcome:
    requeue_after: float
    latest: dict[str, Any] | None = None


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": KIND, "name": body["metadata"]["name"],
            "uid": body["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def reconcile(body: Mapping[str, Any]) -> Outcome:
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation", 0))
    old = BackupPolicyStatus.model_validate(body.get("status") or {})
    try:
        spec = BackupPolicySpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return _stalled(body, old, [status.Problem("InvalidSpec", validation_summary(error))])
    t, tenant_spec, problem = _tenant(spec.tenant_ref.name, namespace)
    if t is None or tenant_spec is None:
        if problem is not None and problem.reason in (TENANT_NOT_PLACED, TENANT_NOT_FOUND):
            # Not placed: its runs would write (and count, for retention) under
            # the name of the tenant that holds it. Not found (deleted): each
            # night's run waited for the tenant's gone credentials Secret until
            # its deadline, then failed. A CronJob made before goes; it comes
            # back with the tenant.
            _stop_scheduled_runs(name, namespace)
        return _stalled(body, old, [problem] if problem else [])
    if t.isolate:
        # Before anything below can stall this pass: an incident's responder who
        # deletes a leaked Secret stalls the policy, and its runners and primary
        # kept their way out to the bucket for as long as the isolation lasted.
        _cut_off(name, namespace, spec, t, owner_reference(body))
    when = spec.schedule or t.backup_schedule
    zone = spec.time_zone or t.backup_time_zone
    problems = _missing_secrets(spec, namespace)
    try:
        schedule.zone(zone)
    except schedule.UnknownTimeZoneError as error:
        problems.append(status.Problem("UnknownTimeZone", f"spec.timeZone: {error}"))
    else:
        physical_schedules = [] if spec.physical_backups is None else [
            (f"spec.physicalBackups.{field}", expression)
            for _, field, expression in physical_backups.schedules(spec.physical_backups)]
        for field, expression in [("spec.schedule", when), *physical_schedules]:
            if (why := schedule.problem(expression, zone, datetime.now(UTC))) is not None:
                problems.append(status.Problem("InvalidSchedule", f"{field}: {why}"))
        # Only the dumps' schedule is a CronJob's; the others are the operator's.
        if (why := schedule.cron_job_problem(when)) is not None:
            problems.append(status.Problem("InvalidSchedule", f"spec.schedule: {why}"))
    # The tenant's policies, read once: which one archives, and the primary's
    # archiving settings in the configuration this policy saves.
    policies = backup_policies(t.name, namespace)
    taken = backup_location.conflict(policies, name, t.name, spec.storage)
    if taken is not None:
        _stop_scheduled_runs(name, namespace)
        return _stalled(body, old, [status.Problem("StorageInUse", taken.message(t.name))])
    t = replace(t, archiving=archiving_policy.archiving(policies))
    archiver = (t.archiving.policy if t.archiving is not None
                and spec.continuous_archiving is not None else None)
    addresses = storage.endpoint_addresses(spec.storage.endpoint)
    try:
        egress = backup_network.runner_egress(name, namespace, spec, t, addresses)
        archive_egress = backup_network.archive_egress(name, namespace, spec, t, addresses) if (
            archiver == name) else None
    except ValueError as error:
        problems.append(status.Problem("InvalidSpec", str(error)))
    if problems:
        return _stalled(body, old, problems)

    # The tenant's suspend windows that can be kept, judged once for the pass.
    windows = _kept_windows(tenant_spec.suspend_windows)
    window = suspend_windows.state(windows, clock.now())
    # A suspend window's tenant is stopped until its database is back: a
    # scheduled run before that could only fail.
    resuming = (not t.suspend and not window.suspended and bool(tenant_spec.suspend_windows)
                and t.postgres.enabled and not _database_ready(namespace))
    database_stopped = t.suspend or window.suspended or resuming
    owner = owner_reference(body)
    # Read before the children: a run of either kind holds back the other.
    jobs = kube.list_objects("batch/v1", "Job", namespace=namespace,
                             label_selector=f"{builders.POLICY_LABEL}={name}")
    job_runs = [_job_run(namespace, job) for job in jobs]
    running = [job for job, run in zip(jobs, job_runs, strict=True)
               if run.result == RunResult.RUNNING]
    request = (meta.get("annotations") or {}).get(builders.BACKUP_NOW_ANNOTATION) or None
    on_demand = _on_demand_job(body, spec, t, request, running)
    children = [
        # First: a runner started before its egress policy exists reaches nothing.
        egress,
        *([archive_egress] if archive_egress is not None else []),
        # The configuration as the tenant asks for it (not with its writes stopped
        # for a recovery or a bootstrap under way).
        builders.configuration(name, namespace, t, tenant_spec.model_dump(
            mode="json", by_alias=True, exclude_none=True),
            _rendered(replace(t, writes_stopped=False))),
        # Held while a run it did not start lasts: its concurrencyPolicy Forbid
        # counts its own Jobs only. A time it misses meanwhile it runs once
        # resumed, within its starting deadline.
        builders.cron_job(name, namespace, spec, t, when, zone,
                          database_stopped=database_stopped,
                          other_run=on_demand is not None or any(
                              not _started_by_cron_job(j) for j in running)),
        *([on_demand] if on_demand is not None else []),
    ]
    live_cron = None
    for child in children:
        child["metadata"]["ownerReferences"] = [owner]
        if child is on_demand:
            # The CronJob is held from here on (applied just before), but it may
            # have started a run since the Jobs were read: never two dumps.
            if _started_since(namespace, name, jobs):
                logger.info("policy %s/%s: backup request %r waits for the scheduled run "
                            "that started meanwhile", namespace, name, request)
                continue
            # Checked not to exist (_on_demand_job); its run is under way from now.
            job_runs.append(_job_run(namespace, kube.apply(child)))
            continue
        live = _applied(child, namespace)
        if child["kind"] == "CronJob":
            live_cron = live
    _prune_on_demand_jobs(namespace, jobs, job_runs,
                          builders.manual_job_name(name, request) if request else None)
    if archive_egress is None and old.continuous_archiving is not None:
        # This policy archived and no longer does (turned off, or another one's
        # now): the primary's way out goes. (The status forgets the archive
        # below, so this is asked once, not at every resync.)
        kube.delete("networking.k8s.io/v1", "NetworkPolicy",
                    backup_network.archive_egress_name(name), namespace)

    now = datetime.now(UTC)
    storage_error: str | None = None
    active = [r for r in job_runs if r.result == RunResult.RUNNING]
    archive = None
    known = old.physical_backups.backups if old.physical_backups else []
    backups: list[PhysicalBackup] = []
    # The primary's exporter says how far the archive reaches, and into which
    # incarnation's repository it archives.
    primary = page = None
    if archiver == name and not database_stopped:
        primary = kube.get("v1", "Pod", postgres.primary_pod(t.primary_ordinal), namespace)
        page = primary_metrics.read(primary)
    # The block bounds the life of the CA bundle's temporary file.
    with storage.policy_store(spec.storage, namespace) as store:
        try:
            manifests = store.manifests(t.name)
            if archiver == name:
                archive = archive_status.read(
                    store.client, spec.storage, t.name, old.continuous_archiving,
                    archive_status.writing_incarnation(page, primary))
                if spec.physical_backups is not None and archive and archive.repository_path:
                    backups = physical_backups.read(
                        store.client, spec.storage.bucket, archive.repository_path,
                        archiving.stanza(t.name), known)
        except (BotoCoreError, ClientError) as error:
            # The bucket cannot be read: keep what was known, and say why.
            storage_error = str(error)[:1024]
            manifests = []
            archive = old.continuous_archiving if archiver == name else None
            backups = list(known)
        reported = None
        if archive is not None and not database_stopped:
            # How far the archive reaches, as the primary knows it.
            reported = archive_status.archived_through(page) if page else None
            archive = archive_status.with_primary(archive, reported, old.continuous_archiving)
        newest = manifests[-1] if manifests else None
        new_backup = newest is not None and (old.last_successful_run is None
                                             or old.last_successful_run.id != newest.run_id)
        if storage_error is None and new_backup and (replaced := database_replaced(manifests)):
            logger.warning("policy %s/%s: %s", namespace, name, replaced)
            kube.record_event(dict(body), "Warning", "DatabaseReplaced", replaced)
        if storage_error is None and new_backup and (retention_error := retain(
                store, t.name, spec, now, active, zone, _dumps_read(t.name, name, namespace,
                                                                    manifests, now, spec),
                databases_of(manifests))):
            logger.warning("policy %s/%s: %s", namespace, name, retention_error)
            kube.record_event(dict(body), "Warning", "RetentionFailed",
                              f"{retention_error}; tried again after the next backup")

    # As the CronJob: not for a suspended policy, nor while the tenant's
    # database is replaced or being made (its dump would become the newest
    # backup, and retention would drop a good one for it).
    if storage_error is None and not active and not builders.scheduled_runs_held(
            spec, t, database_stopped=database_stopped):
        made_up = _make_up_missed_run(body, spec, t, windows, when, zone, job_runs, newest,
                                      owner)
        if made_up is not None:
            job_runs.append(made_up)
            active = [made_up]

    finished = [r for r in job_runs if r.result != RunResult.RUNNING]
    successes = {m.run_id for m in manifests}
    failures = [r for r in finished if r.result == RunResult.FAILED and r.id not in successes
                and not (storage_error and r.reason == "NoManifest")]
    last_success = newest.to_backup_run() if newest else (
        old.last_successful_run if storage_error else None)
    candidates = [*failures, *([last_success] if last_success else [])]
    last_run = max(candidates, key=_finished_at, default=None)

    archived = _archiving_observation(spec, name, archiver, old, archive, now, storage_error)
    physical, physical_seen = (None, None) if archiver != name else _physical(
        body, spec, t, zone, now, backups, archive, old, usable=storage_error is None)
    rpo = None
    if physical is not None and physical.recoverability_window is not None and (
            spec.continuous_archiving is not None):
        rpo = physical_backups.freshness(archive, spec.continuous_archiving.archive_timeout_seconds,
                                         now, primary_reported=reported is not None)
    stopped = suspended_while_owed(windows, when, zone, newest, clock.now())
    conditions = _conditions(old, generation, now, when, zone, last_run, newest, body, active,
                             storage_error, [o for o in (archived, physical_seen) if o], rpo,
                             stopped)
    next_time = schedule.next_fire(when, zone, now)
    physical_fire = _next_physical_fire(spec, zone, now) if physical is not None else None
    cron_status = (live_cron or {}).get("status") or {}
    new = BackupPolicyStatus(
        observed_generation=generation,
        conditions=conditions,
        schedule=when,
        time_zone=zone,
        cron_job_name=builders.cron_job_name(name),
        last_schedule_time=cron_status.get("lastScheduleTime"),
        next_schedule_time=None if spec.suspend else next_time,
        active_run=active[0] if active else None,
        last_run=last_run,
        last_successful_run=last_success,
        continuous_archiving=archive,
        physical_backups=physical,
    )
    latest = _write(body, old, new)
    if last_run is not None and (old.last_run is None or old.last_run.id != last_run.id
                                 or old.last_run.result != last_run.result):
        if last_run.result == RunResult.SUCCEEDED:
            kube.record_event(dict(body), "Normal", "BackupSucceeded",
                              f"backup {last_run.id} complete: {last_run.location}")
        else:
            kube.record_event(dict(body), "Warning", last_run.reason or "BackupFailed",
                              f"backup {last_run.id} failed: {last_run.message or ''}")
    if active or (physical is not None and physical.pending_request is not None):
        return Outcome(ACTIVE_SECONDS, latest)
    if physical is not None and physical.held_request is not None:
        # Each pass reads the bucket: a restore's end is seen within this.
        return Outcome(HELD_SECONDS, latest)
    upcoming = min(next_time, physical_fire) if physical_fire else next_time
    wait = min(IDLE_SECONDS, max(1.0, (upcoming - now).total_seconds()))
    if window.next_change is not None:
        # On the windows' own clock (clock.py): the CronJob stops or resumes then.
        wait = min(wait, max(1.0, (window.next_change - clock.now()).total_seconds()))
    if resuming:
        wait = min(wait, RESUMING_SECONDS)  # a missed run is due once it is back
    return Outcome(wait, latest)


def _stop_scheduled_runs(name: str, namespace: str) -> None:
    """The CronJob of a policy refused its place goes (a policy moved onto
    another's place had one): each run it started would be another policy's
    backup to prune, and would prune them. Read first, so a policy left
    refused asks nothing more of the API server at each look."""
    cron_job = builders.cron_job_name(name)
    if kube.get("batch/v1", "CronJob", cron_job, namespace) is not None:
        kube.delete("batch/v1", "CronJob", cron_job, namespace)


def _kept_windows(windows: Sequence[SuspendWindow]) -> Sequence[SuspendWindow]:
    """The tenant's suspend windows, or none if one cannot be kept (an unknown time
    zone, a date that never comes): such windows hold nothing here, and the
    tenant's own status says what is wrong."""
    return () if suspend_windows.problem(windows, clock.now()) is not None else windows


def _database_ready(namespace: str) -> bool:
    found = kube.get("apps/v1", "StatefulSet", postgres.NAME, namespace)
    return int(((found or {}).get("status") or {}).get("readyReplicas") or 0) > 0


def _make_up_missed_run(
    body: Mapping[str, Any], spec: BackupPolicySpec, t: EffectiveTenant,
    windows: Sequence[SuspendWindow], when: str, zone: str, job_runs: Sequence[BackupRun],
    newest: Manifest | None, owner: dict[str, Any],
) -> BackupRun | None:
    """Start the run a suspend window swallowed (backup_catchup.py), once."""
    attempts = [r.start_time for r in job_runs if r.start_time is not None]
    if newest is not None:
        attempts.append(newest.finished_at)
    fire = backup_catchup.missed_fire(
        windows, when, zone, clock.now(), max(attempts, default=None), STARTING_DEADLINE)
    if fire is None:
        return None
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    job = builders.manual_job(name, namespace, spec, t, backup_catchup.request_for(fire))
    if kube.get("batch/v1", "Job", job["metadata"]["name"], namespace) is not None:
        return None  # started already; its run is among job_runs once it has a pod
    job["metadata"]["ownerReferences"] = [owner]
    kube.apply(job)
    message = (f"the run scheduled for {fire.isoformat()} fell in a suspend window: "
               f"started now that the database is back")
    logger.info("policy %s/%s: %s", namespace, name, message)
    kube.record_event(dict(body), "Normal", "MissedBackupStarted", message)
    return BackupRun(id=job["metadata"]["name"], result=RunResult.RUNNING,
                     start_time=clock.now(), message=message)


def _physical(
    body: Mapping[str, Any], spec: BackupPolicySpec, t: EffectiveTenant, zone: str,
    now: datetime, backups: list[PhysicalBackup], archive: ArchiveStatus | None,
    old: BackupPolicyStatus, *, usable: bool,
) -> tuple[PhysicalBackupsStatus | None, status.Observation | None]:
    """The physical backups of the archiving policy: ask the primary for the one
    due (reconcile/physical_backups.py), and say what the repository holds."""
    settings, archiving_settings = spec.physical_backups, spec.continuous_archiving
    pod_name = postgres.primary_pod(t.primary_ordinal)
    pod = kube.get("v1", "Pod", pod_name, t.namespace)  # (the pods' watch cache)
    live = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(
        archiving.REQUEST_ANNOTATION)
    if settings is None or archiving_settings is None:
        if live is not None:
            # Turned off (often because they failed): a request left on the pod is
            # tried again by the archiver every few minutes, for ever, unreported.
            kube.annotate("v1", "Pod", pod_name, t.namespace,
                          {archiving.REQUEST_ANNOTATION: None})
            kube.record_event(dict(body), "Normal", "PhysicalBackupWithdrawn",
                              f"physicalBackups is off: the request {live.split(' ')[0]} "
                              f"asked of pod {pod_name} is withdrawn")
        return None, None
    current = archiving.parse_request(live)
    answered = physical_backups.answered(live, backups)
    deadline = _deadline(spec)
    held: str | None = None
    held_since: datetime | None = None
    # A request needs the primary and its repository (the archiver makes the
    # stanza first), a readable bucket to judge what is due, and a tenant that
    # is not isolated (no data leaves it then).
    # Nor while an in-place recovery replaces the database (its apps are stopped).
    if pod is not None and archive is not None and archive.repository_path and usable and (
            not t.isolate and not t.writes_stopped):
        plan = physical_backups.plan(settings, zone, now, backups, current)
        blocking = _request_held(plan.request, backups, archive.repository_path, now,
                                 deadline) if plan.request is not None else None
        before = old.physical_backups
        decided = restore_holds.hold(blocking, before.held_since if before else None, now,
                                     deadline)
        held, held_since = decided.reason, decided.since
        if held is not None:
            # Not asked, or withdrawn (one left on the pod after it was overdue is
            # retried by the archiver, whose expiry would hit the restore; the
            # archiver reads requests only when idle, so nothing running stops):
            # the plan asks again once the restore has read its backup.
            plan = physical_backups.Plan(None, None)
            if before is None or before.held_request != held:
                kube.record_event(dict(body), "Normal", "PhysicalBackupHeld", held)
        elif decided.overran and before is not None and before.held_request is not None:
            kube.record_event(dict(body), "Warning", "PhysicalBackupHeldTooLong",
                              f"{before.held_request[:700]}; held since {held_since}, longer "
                              "than the policy's deadline: asked now")
        wanted = archiving.request_value(plan.request) if plan.request else None
        if wanted != live:
            kube.annotate("v1", "Pod", pod_name, t.namespace,
                          {archiving.REQUEST_ANNOTATION: wanted})
            if plan.request is not None and plan.request != current:
                kube.record_event(dict(body), "Normal", "PhysicalBackupRequested",
                                  f"a {plan.request.type.value} backup asked of pod "
                                  f"{pod_name} (request {plan.request.id})")
        pending = plan.pending
    else:
        pending = current if current and not physical_backups.satisfied(current, backups) else None
    # Announced as they appear (not all at once when the status first lists them).
    new = {b.label for b in backups} - {b.label for b in old.physical_backups.backups} if (
        old.physical_backups is not None) else set()
    for label in sorted(new):
        kube.record_event(dict(body), "Normal", "PhysicalBackupComplete",
                          f"physical backup {label} is in the repository")
    since = physical_backups.waiting_since(
        old.physical_backups.pending_request if old.physical_backups else None, pending, backups)
    last_request = answered or (old.physical_backups.last_request if old.physical_backups
                                else None)
    found = PhysicalBackupsStatus(
        backups=backups,
        pending_request=PhysicalBackupRequest(
            id=pending.id, type=pending.type, pod=pod_name, waiting_since=since,
            retention=f"{pending.retention_type} {pending.retention}")
        if pending else None,
        recoverability_window=physical_backups.window(
            backups, archive, archiving_settings.archive_timeout_seconds),
        last_request=last_request,
        held_request=held,
        held_since=held_since,
    )
    stale = physical_backups.unexpired(last_request, backups, now)
    return found, physical_backups.observation(backups, pending, pod_name, now, deadline, since,
                                               stale)


def _request_held(request: BackupRequest, backups: Sequence[PhysicalBackup], repository: str,
                  now: datetime, deadline: timedelta) -> str | None:
    """Why ``request`` is not asked for yet: the expiry after its backup would
    remove the full backup a running restore of the repository starts from
    (restore_holds.py); None when nothing is in its way."""
    restores = restore_holds.lasting(restore_holds.physical_restores(
        repository, kube.list_objects(API, "DRDrill"), kube.list_objects(API, "StackForgeTenant")),
        now, deadline)
    found = restore_holds.endangered(restores, request, backups, now)
    if not found:
        return None
    restore, removed = found[0]
    return (f"the {request.type.value} backup due is asked for once {restore.holder} has "
            f"restored backup {removed.label}, which pgBackRest's expiry after it would "
            f"remove (for {_hours(deadline)} at most)"[:1024])


def _next_physical_fire(spec: BackupPolicySpec, zone: str, now: datetime) -> datetime | None:
    settings = spec.physical_backups
    if settings is None:
        return None
    return min(schedule.next_fire(e, zone, now) for e in (
        settings.full_schedule, settings.differential_schedule, settings.incremental_schedule)
        if e is not None)


def _archiving_observation(
    spec: BackupPolicySpec, name: str, archiver: str | None, old: BackupPolicyStatus,
    archive: ArchiveStatus | None, now: datetime, storage_error: str | None,
) -> status.Observation | None:
    settings = spec.continuous_archiving
    if settings is None:
        return None
    if archiver != name:
        return status.Observation(
            types.CONTINUOUS_ARCHIVING, ConditionStatus.FALSE, "AnotherPolicyArchives",
            f"BackupPolicy {archiver} archives this tenant's WAL already (a database has one "
            "archive); remove continuousArchiving here" if archiver else
            "waiting for the tenant's policies to be read")
    previous = status.find(old.conditions, types.CONTINUOUS_ARCHIVING)
    waiting_since = now
    if previous is not None and previous.reason == "WaitingForFirstSegment" and (
            previous.last_transition_time is not None):
        waiting_since = previous.last_transition_time
    return archive_status.observation(archive, settings.archive_timeout_seconds, now,
                                      waiting_since, storage_error)


def _applied(child: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    """``child`` as it is live once applied (not written when it is so already)."""
    live = kube.get(child["apiVersion"], child["kind"], child["metadata"]["name"], namespace)
    child = stamped(child)
    if needs_apply(child, live):
        live = kube.apply(child)
    return live


def _cut_off(name: str, namespace: str, spec: BackupPolicySpec, t: EffectiveTenant,
             owner: dict[str, Any]) -> None:
    """The policy's egress objects, empty for an isolated tenant: its runners', and
    the primary's to the archive where this policy made one (made anew for a
    policy that archives nothing, it would be an object with no purpose)."""
    cut = [backup_network.runner_egress(name, namespace, spec, t)]
    if kube.get("networking.k8s.io/v1", "NetworkPolicy",
                backup_network.archive_egress_name(name), namespace) is not None:
        cut.append(backup_network.archive_egress(name, namespace, spec, t))
    for child in cut:
        child["metadata"]["ownerReferences"] = [owner]
        _applied(child, namespace)


def _tenant(
    tenant: str, namespace: str
) -> tuple[EffectiveTenant | None, StackForgeTenantSpec | None, status.Problem | None]:
    # The tenant is looked up in the policy's namespace, where the database
    # credentials are: a policy elsewhere finds no tenant (TenantNotFound).
    found = referenced_tenant(tenant, namespace)
    if isinstance(found, status.Problem):
        return None, None, found
    t, tenant_spec = found
    return t, tenant_spec, None


def _rendered(t: EffectiveTenant) -> list[dict[str, Any]]:
    secrets = [{"kind": "Secret", "metadata": {"name": n}} for n in credentials.wanted_keys(t)]
    return stack.desired_children(t, secrets=secrets, tls=None, rotation=None)


def _missing_secrets(spec: BackupPolicySpec, namespace: str) -> list[status.Problem]:
    wanted = storage.storage_secrets(spec.storage)
    if BackupTarget.GRAFANA_DASHBOARDS in spec.targets and spec.grafana is not None:
        ref = spec.grafana.api_token_secret_ref
        wanted.append(storage.SecretKeys("spec.grafana.apiTokenSecretRef", ref.name, (ref.key,)))
    return storage.identity_problems(spec.storage) or storage.secret_problems(
        wanted, namespace) or storage.ca_problems(spec.storage, namespace)


def suspended_while_owed(windows: Sequence[SuspendWindow], when: str, zone: str,
                         newest: Manifest | None, now: datetime) -> timedelta:
    """How long suspend windows held the database stopped while the next backup
    was owed: the newest backup's age does not count it.

    Only from the schedule's first run after the newest backup on: a window
    before that run changed nothing (the run was not due yet), and the
    staleness limit, which reaches to that run, already spans it. Counting it
    too let one missed weekday backup stay Fresh for another 11 h of a
    nightly window, until the next run was due as well."""
    if newest is None:
        return timedelta(0)
    owed = schedule.owed_fire(when, zone, newest.started_at, finished=newest.finished_at,
                              starting_deadline=STARTING_DEADLINE)
    return suspend_windows.covered(windows, max(newest.finished_at, owed), now)


def databases_of(manifests: Sequence[Manifest]) -> dict[str, str]:
    """Run id -> the system identifier of the database its dump is of (pure)."""
    return {m.run_id: m.postgres.system_identifier for m in manifests
            if m.postgres is not None and m.postgres.system_identifier}


def database_replaced(manifests: Sequence[Manifest]) -> str | None:
    """What to say when the newest backup (``manifests`` are oldest first) is of
    another database than the backup before it that names one (pure): the
    tenant's database was made afresh (a volume lost, the tenant made again
    under its name, a logical restore). Retention keeps the earlier database's
    backups from then on (backup/retention.py)."""
    databases = databases_of(manifests)
    named = [m for m in manifests if m.run_id in databases]
    if len(named) < 2 or named[-1] is not manifests[-1]:
        return None
    newest, before = databases[named[-1].run_id], databases[named[-2].run_id]
    if newest == before:
        return None
    earlier = [m.run_id for m in named if databases[m.run_id] != newest]
    return (f"backup {named[-1].run_id} is of another database (system identifier "
            f"{newest}) than backup {named[-2].run_id} before it ({before}): the tenant's "
            f"database was made afresh. Retention keeps the {len(earlier)} backups of "
            f"other databases and no longer counts them; restore from them if the new "
            f"database is not the one wanted, and delete them by hand once not needed")


def retain(store: BackupStore, tenant: str, spec: BackupPolicySpec, now: datetime,
           active: Sequence[BackupRun], zone: str = "Etc/UTC",
           held: Collection[str] = (),
           databases: Mapping[str, str] = MappingProxyType({})) -> str | None:
    """Apply the policy's retention once a new backup is complete; why it failed,
    or None. A failure (the bucket refuses deletes, as a write-only key does)
    must not end the pass: the caller reports it and writes the status, and
    retention is tried again after the next backup. Days, weeks and months are
    the schedule's ``zone``'s: a nightly 21:00 New York backup of the last of
    February is February's, though it is March in UTC. ``held``: the runs
    restores are reading (restore_holds.held_dumps), kept. ``databases``: run id
    -> its dump's database (databases_of): other databases' runs are kept."""
    running_since = min((r.start_time for r in active if r.start_time is not None),
                        default=None)
    try:
        report = apply_retention(store, tenant, spec.retention, now,
                                 running_since=running_since, tz=schedule.zone(zone),
                                 held=held, databases=databases)
    except (BotoCoreError, ClientError, RuntimeError) as error:
        return f"retention could not delete expired backups: {error}"[:1024]
    if report.deleted:
        logger.info("tenant %s: retention deleted %s", tenant, report.deleted)
    return None


def _dumps_read(tenant: str, policy: str, namespace: str, manifests: Sequence[Manifest],
                now: datetime, spec: BackupPolicySpec) -> set[str]:
    """The policy's dumps that running drills and bootstraps read (restore_holds.py).

    Held for as long as they read, up to the longest a drill's run may last
    (its sandbox's longest TTL), not the policy's run deadline: a restore of a
    large dump outlasted a short deadline, and the dump it was reading could
    fall out of keepLast midway. A dump held longer costs storage; a physical
    backup held longer would stop backups, and keeps the deadline (_physical)."""
    restores = restore_holds.lasting(restore_holds.logical_restores(
        tenant, namespace, policy, kube.list_objects(API, "DRDrill", namespace=namespace),
        kube.list_objects(API, "StackForgeTenant")), now,
        max(_deadline(spec), LOGICAL_HOLD_LIMIT))
    held = restore_holds.held_dumps(restores, manifests)
    if held:
        logger.info("policy %s/%s: retention keeps %s, read by %s", namespace, policy,
                    sorted(held), ", ".join(r.holder for r in restores))
    return held


# The longest a restore holds the dumps it reads: a drill's run lasts at most its
# sandbox's TTL, whose longest is this (models/drill.py).
LOGICAL_HOLD_LIMIT = timedelta(seconds=604800)


def _deadline(spec: BackupPolicySpec) -> timedelta:
    return timedelta(seconds=builders.deadline_seconds(spec))


def _started_since(namespace: str, policy: str, jobs: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a Job of the policy exists now that is not among ``jobs`` (read
    earlier in the pass). One LIST, only when an on-demand run is about to start."""
    known = {job["metadata"]["uid"] for job in jobs}
    return any(job["metadata"]["uid"] not in known for job in kube.list_objects(
        "batch/v1", "Job", namespace=namespace,
        label_selector=f"{builders.POLICY_LABEL}={policy}"))


def _on_demand_job(body: Mapping[str, Any], spec: BackupPolicySpec, t: EffectiveTenant,
                   request: str | None,
                   running: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The Job to start for the policy's on-demand request, if one is to start now.

    A request runs once: its Job's name is made from it, and a Job of that name
    means it ran (a Job's template is immutable anyway). One asked while a run
    is under way waits for it (``activeRun`` shows which): never two dumps of
    one database at once; one asked while the tenant's writes are stopped for a
    recovery or a bootstrap waits until they resume.
    """
    meta = body["metadata"]
    if request is None:
        return None
    job = builders.manual_job(meta["name"], meta["namespace"], spec, t, request)
    if kube.get("batch/v1", "Job", job["metadata"]["name"], meta["namespace"]) is not None:
        return None
    if running:
        logger.info("policy %s/%s: backup request %r waits for Job %s", meta["namespace"],
                    meta["name"], request, running[0]["metadata"]["name"])
        return None
    if t.writes_stopped:
        # A recovery or a bootstrap is replacing or making the database: its dump
        # would be of half of one, yet the newest backup retention keeps.
        logger.info("policy %s/%s: backup request %r waits for tenant %s's database "
                    "(a recovery or a bootstrap is under way)", meta["namespace"],
                    meta["name"], request, t.name)
        return None
    return job


def _prune_on_demand_jobs(namespace: str, jobs: Sequence[Mapping[str, Any]],
                          job_runs: Sequence[BackupRun], current: str | None) -> None:
    """Ended runs on demand (and made up after a window) beyond the newest
    ON_DEMAND_JOBS_KEPT go, with their pods, as the CronJob's history does: one
    Job per request was kept for ever. The ``current`` request's Job stays
    whatever its age: it is what says the request ran."""
    ended = sorted(((run, job) for job, run in zip(jobs, job_runs, strict=False)
                    if run.result != RunResult.RUNNING and not _started_by_cron_job(job)),
                   key=lambda pair: _finished_at(pair[0]), reverse=True)
    for _run, job in ended[ON_DEMAND_JOBS_KEPT:]:
        if job["metadata"]["name"] != current:
            kube.delete("batch/v1", "Job", job["metadata"]["name"], namespace)


def _started_by_cron_job(job: Mapping[str, Any]) -> bool:
    return any(o.get("kind") == "CronJob" for o in job["metadata"].get("ownerReferences") or [])


def _job_run(namespace: str, job: Mapping[str, Any]) -> BackupRun:
    """What a Job says about its run (the manifest, read elsewhere, has the last word)."""
    job_status = job.get("status") or {}
    name = job["metadata"]["name"]
    job_conditions = {c["type"]: c for c in job_status.get("conditions") or []
                      if c.get("status") == "True"}
    started = job_status.get("startTime") or job["metadata"].get("creationTimestamp")
    if not ({"Complete", "Failed"} & set(job_conditions)):
        return BackupRun(id=f"job:{name}", result=RunResult.RUNNING, start_time=started,
                         job_name=name)
    result = termination_result(namespace, name, parse_result)
    run_id = str(result.get("runId") or f"job:{name}")
    finished = job_status.get("completionTime") or (
        job_conditions.get("Failed") or job_conditions.get("Complete") or {}
    ).get("lastTransitionTime")
    if "Complete" in job_conditions and result.get("result") == "Succeeded":
        # Confirmed only if its manifest is in the bucket (the caller checks).
        return BackupRun(id=run_id, result=RunResult.FAILED, reason="NoManifest",
                         message="the Job succeeded but no manifest exists for its run",
                         start_time=started, completion_time=finished, job_name=name)
    if "Complete" in job_conditions and not result:
        # Its pod is gone (its node deleted, the pod collected): the runner exited
        # 0, which it does only with its manifest written, so the bucket's newest
        # backup speaks for it. Read as failed (JobFailed, under an id no manifest
        # has), it turned LastBackupSucceeded False over a backup that exists.
        return BackupRun(id=run_id, result=RunResult.SUCCEEDED, start_time=started,
                         completion_time=finished, job_name=name)
    failed = job_conditions.get("Failed") or {}
    return BackupRun(
        id=run_id, result=RunResult.FAILED,
        reason=str(result.get("reason") or failed.get("reason") or "JobFailed")[:128],
        message=str(result.get("message") or failed.get("message") or "")[:4096] or None,
        start_time=started, completion_time=finished, job_name=name,
    )


def _finished_at(run: BackupRun) -> datetime:
    return run.completion_time or run.start_time or datetime(1970, 1, 1, tzinfo=UTC)


def _conditions(
    old: BackupPolicyStatus, generation: int, now: datetime, when: str, zone: str,
    last_run: BackupRun | None, newest: Manifest | None, body: Mapping[str, Any],
    active: Sequence[BackupRun], storage_error: str | None,
    extra: Sequence[status.Observation], rpo: status.Observation | None = None,
    stopped: timedelta = timedelta(0),
) -> list[Any]:
    """``rpo``: BackupFresh as judged from the archive, which replaces the
    dumps' freshness once a restore to a moment is possible; ``stopped``: how
    long suspend windows held the database stopped since the newest backup."""
    if last_run is None:
        succeeded = status.Observation(types.LAST_BACKUP_SUCCEEDED, ConditionStatus.UNKNOWN,
                                       "NoRunYet", "no backup has run yet")
    elif last_run.result == RunResult.SUCCEEDED:
        succeeded = status.Observation(types.LAST_BACKUP_SUCCEEDED, ConditionStatus.TRUE,
                                       "Succeeded", f"run {last_run.id} is complete")
    else:
        succeeded = status.Observation(types.LAST_BACKUP_SUCCEEDED, ConditionStatus.FALSE,
                                       last_run.reason or "Failed",
                                       f"run {last_run.id}: {last_run.message or 'failed'}")
    if storage_error is not None:
        # Freshness cannot be judged without the bucket.
        fresh = status.Observation(types.BACKUP_FRESH, ConditionStatus.UNKNOWN,
                                   "StorageUnavailable", storage_error)
        progress = status.Progress.STALLED
        message = f"cannot read the backup bucket: {storage_error}"
        return status.merge(old.conditions, [
            *status.rollup(progress, "StorageUnavailable", message), succeeded, fresh, *extra],
            generation=generation, now=now, drop=_dropped(extra))
    created = datetime.fromisoformat(body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    if newest is not None:
        age = now - newest.finished_at - stopped
        limit = schedule.staleness_limit(when, zone, newest.started_at, GRACE,
                                         finished=newest.finished_at,
                                         starting_deadline=STARTING_DEADLINE)
        fresh = status.Observation(
            types.BACKUP_FRESH, ConditionStatus.TRUE if age <= limit else ConditionStatus.FALSE,
            "Fresh" if age <= limit else "Stale",
            f"newest complete backup {newest.run_id} is {_hours(age)} old"
            + (f" in running time ({_hours(stopped)} suspended since)" if stopped else "")
            + f" (allowed: {_hours(limit)})")
    elif now > (due := schedule.first_backup_deadline(when, zone, created, GRACE)):
        fresh = status.Observation(types.BACKUP_FRESH, ConditionStatus.FALSE, "NoBackup",
                                   f"no complete backup within {_hours(due - created)}")
    else:
        fresh = status.Observation(types.BACKUP_FRESH, ConditionStatus.UNKNOWN, "NoBackupYet",
                                   "no complete backup yet")
    if rpo is not None:
        fresh = status.Observation(rpo.type, rpo.status, rpo.reason,
                                   f"{rpo.message}; logical dumps: {fresh.message}")
    failing = [o for o in (succeeded, fresh, *extra) if o.status == ConditionStatus.FALSE]
    if failing:
        progress = status.Progress.STALLED
        reason, message = failing[0].reason, "; ".join(o.message for o in failing)
    else:
        progress, reason = status.Progress.READY, "Scheduled"
        message = f"backups run on {when!r} ({zone})" + (
            f"; {len(active)} running" if active else "")
    return status.merge(old.conditions, [*status.rollup(progress, reason, message),
                                         succeeded, fresh, *extra], generation=generation,
                        now=now, drop=_dropped(extra))


def _dropped(extra: Sequence[status.Observation]) -> set[str]:
    """ContinuousArchiving and PhysicalBackups go with their part of the spec."""
    return {types.CONTINUOUS_ARCHIVING, types.PHYSICAL_BACKUPS} - {o.type for o in extra}


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f}h" if hours < 48 else f"{hours / 24:.1f}d"


def _stalled(
    body: Mapping[str, Any], old: BackupPolicyStatus, problems: Sequence[status.Problem]
) -> Outcome:
    generation = int(body["metadata"].get("generation", 0))
    reason = problems[0].reason if problems else "Unknown"
    message = "; ".join(p.message for p in problems)
    conditions = status.merge(old.conditions,
                              status.rollup(status.Progress.STALLED, reason, message),
                              generation=generation, now=datetime.now(UTC))
    new = old.model_copy(update={"observed_generation": generation, "conditions": conditions})
    return Outcome(STALLED_SECONDS, _write(body, old, new))


def _write(
    body: Mapping[str, Any], old: BackupPolicyStatus, new: BackupPolicyStatus
) -> dict[str, Any] | None:
    if not status_changed(body, old, new):
        return None
    meta = body["metadata"]
    latest = kube.patch_status(API, KIND, meta["name"], meta.get("namespace"), status_patch(new))
    post_transitions(body, old, new)
    return latest
