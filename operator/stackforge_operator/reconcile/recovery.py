"""In-place recovery of a tenant's database: the runbook's "database corruption" procedure.

Asked with two annotations on the StackForgeTenant, never with the spec (a
GitOps sync or a copied manifest must not start one):

- ``stackforge.io/recover-to``: the moment to restore, RFC 3339;
- ``stackforge.io/recover-confirm``: ``<namespace>/<name>@<recover-to>``, the
  tenant and the moment typed again. A confirmation copied from another
  tenant, or left over from an earlier target, confirms nothing.

Optionally ``stackforge.io/recover-verify-drill`` names a DRDrill of the
namespace whose queries must pass on the restored database. A request (the
moment, as written) is answered once (``status.recovery``); after a failed
one, naming another drill asks again, but taking the drill off does not (it
restored again, unverified), and after a success nothing does. A refused one
is looked at again on
every reconcile for ``config.RECOVERY_REQUEST_SECONDS`` from when it was first
seen, so a target the archive has not reached yet starts once it has, and a
missing confirmation can be added; not after, or a request refused while the
tenant was suspended would restore a weeks-old moment once it is resumed.
Taking the annotation off and writing it again asks anew.

The steps, each recorded with its times in ``status.recovery.steps``:

1. StopWrites: the apps are scaled to zero (no traffic, no writes) and the
   primary is shut down. Its volume is not touched again.
2. Restore: the primary's StatefulSet starts at the next pod number
   (``spec.ordinals.start``), so its pod gets a new claim, and the first start
   on it restores the tenant's own archive to the target (the image's
   ``stackforge-restore``): the old volume is kept as it was.
3. Verify: the drill's runner checks the restored server (builders/recovery.py).
4. SwitchOver: the restore's settings leave the primary (one restart; it is a
   new incarnation and archives from now on, under a path of its own: not
   before, so that a rolled back restore leaves nothing in the bucket), the
   apps and read replicas come back.

A failure of Restore (the restore keeps failing, or does not finish in time)
or of Verify rolls back: the StatefulSet goes back to the old pod number,
whose volume holds the database as it was stopped, and the apps come back.
``Failed`` then says why; the tenant runs as before.

The operator deletes no claim (it may not: its role never deletes data). The
claim a recovery leaves behind (the old database's after a success, the
failed restore's after a roll-back) is listed in ``keptVolumes`` until a
person deletes it; pod numbers only grow, so a later recovery never starts
on one of them.

Claims outlive their tenant, and which one holds the database is in the
tenant's status only. So a recovery that ends marks the claim the database
is on (``SERVING_ANNOTATION``: the recovery's start; beside it the moment it
answered); a tenant made again over them (a GitOps sync) adopts the newest
marked one (``adopted``), answers that moment as already answered, and
refuses to start while unmarked claims leave it in doubt: on pod number 0
it would serve the database as it was before a recovery, as if current.

Everything here is pure; reconcile/tenant.py observes and applies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from stackforge_operator import API_GROUP, config, pod_health
from stackforge_operator.builders import postgres
from stackforge_operator.builders.archiving import RESTORE_OPTION_PREFIX
from stackforge_operator.builders.common import APP_COMPONENT, COMPONENT_LABEL
from stackforge_operator.builders.drill import PhysicalSource
from stackforge_operator.drill import outcome
from stackforge_operator.models.backup import BackupPolicySpec
from stackforge_operator.models.common import parse_quantity
from stackforge_operator.models.effective import EffectiveTenant, Restore
from stackforge_operator.models.tenant import (
    KEPT_VOLUMES_MAX,
    EndedRecovery,
    RecoveryPhase,
    RecoveryStatus,
    RecoveryStep,
)
from stackforge_operator.pod_health import (
    REVISION_LABEL,
    job_conditions,
    job_messages,
    result_of,
    status_observed,
)
from stackforge_operator.reconcile import archiving_policy

RECOVER_TO_ANNOTATION: Final = f"{API_GROUP}/recover-to"
RECOVER_CONFIRM_ANNOTATION: Final = f"{API_GROUP}/recover-confirm"
RECOVER_VERIFY_ANNOTATION: Final = f"{API_GROUP}/recover-verify-drill"
# On the claim a recovery ended on (its start time): the database, for a tenant
# made again over the claims.
SERVING_ANNOTATION: Final = f"{API_GROUP}/database-since"
# Beside it: the recover-to that recovery answered.
REQUEST_MARK_ANNOTATION: Final = f"{API_GROUP}/database-recovered-to"

Phase = RecoveryPhase
ACTIVE: Final = frozenset({Phase.STOPPING_WRITES, Phase.RESTORING, Phase.VERIFYING,
                           Phase.SWITCHING_OVER, Phase.ROLLING_BACK})
# The database pod is the restored one (the new pod number).
_ON_RESTORED: Final = frozenset({Phase.RESTORING, Phase.VERIFYING, Phase.SWITCHING_OVER,
                                 Phase.SUCCEEDED})
# Until verified, the restored database is built from the policy's settings.
_NEEDS_SOURCE: Final = frozenset({Phase.STOPPING_WRITES, Phase.RESTORING, Phase.VERIFYING})
# A restore that exits in error this often will not succeed by trying again.
RESTORE_ATTEMPTS: Final = 3
STORAGE_QUOTA: Final = "requests.storage"
CLAIMS_QUOTA: Final = "persistentvolumeclaims"
# status.recovery.request's limit: a longer recover-to (no RFC 3339 time) is
# refused with its first characters.
REQUEST_LENGTH: Final = 64
STOP_WRITES, RESTORE, VERIFY, SWITCH_OVER, ROLL_BACK = (
    "StopWrites", "Restore", "Verify", "SwitchOver", "RollBack")


def confirmation(namespace: str, name: str, target: str) -> str:
    """What recover-confirm must say for a recovery of this tenant to ``target``."""
    return f"{namespace}/{name}@{target}"


@dataclass(frozen=True)
class Request:
    """A confirmed request: restore to ``point``, verify with a drill's queries."""

    target: str  # as written in the annotation
    point: datetime
    verify_drill: str | None


def request(annotations: Mapping[str, str], namespace: str, name: str,
            recorded: RecoveryStatus | None, now: datetime) -> Request | str | None:
    """The request to act on, why the one written is refused (a message), or None."""
    target = (annotations.get(RECOVER_TO_ANNOTATION) or "").strip()
    if not target:
        return None
    drill = (annotations.get(RECOVER_VERIFY_ANNOTATION) or "").strip() or None
    if recorded is not None and recorded.request == target:
        if recorded.phase == Phase.REFUSED:
            if recorded.asked_time is not None and now >= _looked_at_until(recorded.asked_time):
                return None  # refused for good: too old to start unattended
        elif not (recorded.phase == Phase.FAILED and drill is not None
                  and drill != recorded.verify_drill):
            # Answered. After a failure, another drill to verify with asks again;
            # none does not (tidying the annotation off must not restore again,
            # unverified), and nothing asks again after a success (the writes
            # since would be thrown away).
            return None
    ended = recorded.last_ended if recorded is not None else None
    if ended is not None and ended.request == target and not (
            ended.phase == Phase.FAILED and drill is not None and drill != ended.verify_drill):
        # Answered before a refusal replaced its record (a typo, then the old
        # moment written back): a success restored again would throw away writes.
        return None
    if len(target) > REQUEST_LENGTH:
        return (f"annotation {RECOVER_TO_ANNOTATION}: {target[:REQUEST_LENGTH]!r}... is "
                f"longer than {REQUEST_LENGTH} characters: not an RFC 3339 time")
    wanted = confirmation(namespace, name, target)
    if (annotations.get(RECOVER_CONFIRM_ANNOTATION) or "").strip() != wanted:
        return (f"annotation {RECOVER_TO_ANNOTATION} asks for an in-place recovery, which "
                f"replaces the database: confirm it with annotation "
                f"{RECOVER_CONFIRM_ANNOTATION}={wanted}")
    try:
        point = datetime.fromisoformat(target)
    except ValueError:
        point = None
    if point is None or point.tzinfo is None:
        return (f"annotation {RECOVER_TO_ANNOTATION}: {target!r} is not an RFC 3339 time "
                "with a zone, e.g. 2026-12-01T06:00:00Z")
    return Request(target, point, drill)


def storage_shortfall(quotas: Sequence[Mapping[str, Any]], needed: str,
                      storage_class: str | None = None) -> str | None:
    """Why a ResourceQuota of the namespace leaves no room for the restore's new
    volume of ``needed``, or None. Without room its claim is refused, no restore
    pod is ever made, and the apps stayed stopped until the restore's deadline
    (2 h) rolled it back: refused before anything stops instead.

    Room is storage and a claim, in all and in ``storage_class`` (when the tenant
    names one: the cluster's default class is not known to the operator, whose
    role may only get a class it is told of)."""
    wants: list[tuple[str, Decimal, str]] = [
        (STORAGE_QUOTA, parse_quantity(needed), f"a new {needed} volume"),
        (CLAIMS_QUOTA, Decimal(1), "a new claim")]
    if storage_class:
        scoped = f"{storage_class}.storageclass.storage.k8s.io/"
        wants += [(scoped + STORAGE_QUOTA, wants[0][1], f"a new {needed} volume"),
                  (scoped + CLAIMS_QUOTA, Decimal(1), "a new claim")]
    for quota in quotas:
        state = quota.get("status") or {}
        for resource, want, what in wants:
            hard = (state.get("hard") or {}).get(resource)
            used = (state.get("used") or {}).get(resource, "0")
            if hard is None:
                continue
            try:
                free = parse_quantity(str(hard)) - parse_quantity(str(used))
            except ValueError:
                continue  # a quota this cannot read is the API server's to enforce
            if free >= want:
                continue
            left = max(free, Decimal(0))
            room = f"{left / Decimal(2**30):.1f}Gi" if resource.endswith(STORAGE_QUOTA) \
                else f"{left:.0f}"
            return (f"the restore needs {what} and ResourceQuota "
                    f"{quota['metadata']['name']} leaves {room} of {resource} "
                    f"({used} of {hard} used, kept volumes included): delete a kept volume "
                    "or raise the quota first; nothing was stopped")
    return None


def kept_volumes_full(recorded: RecoveryStatus | None) -> str | None:
    """Why a recovery may not start while its claim would not be listed, or None.

    Every recovery leaves a claim (the old database's, or the restore's after a
    roll-back), and the status lists KEPT_VOLUMES_MAX: one more would drop the
    oldest from the list while its volume and its data stayed, found by nobody."""
    kept = recorded.kept_volumes if recorded is not None else []
    if len(kept) < KEPT_VOLUMES_MAX:
        return None
    return (f"{len(kept)} volumes of earlier recoveries are kept ({', '.join(kept)}), as "
            "many as the status lists: delete those you no longer need (kubectl delete pvc) "
            "before another recovery, which would keep one more; nothing was stopped")


def primary_ordinal(recovery: RecoveryStatus | None) -> int:
    """The pod number (and so the claim) of the tenant's database now."""
    if recovery is None:
        return 0
    if recovery.phase == Phase.REFUSED:
        return recovery.previous_ordinal
    return recovery.ordinal if recovery.phase in _ON_RESTORED else recovery.previous_ordinal


def active(recovery: RecoveryStatus | None) -> bool:
    return recovery is not None and recovery.phase in ACTIVE


def _highest(previous: RecoveryStatus | None) -> int:
    """The highest pod number a recovery used: the next one starts above it."""
    return max(previous.previous_ordinal, previous.ordinal) if previous else 0


def _looked_at_until(asked: datetime) -> datetime:
    return asked + timedelta(seconds=config.RECOVERY_REQUEST_SECONDS)


def _ended(previous: RecoveryStatus | None) -> EndedRecovery | None:
    """How the last recovery that ran ended, as a refusal after it keeps it."""
    if previous is None or previous.phase == Phase.REFUSED:
        return previous.last_ended if previous is not None else None
    if previous.phase not in (Phase.SUCCEEDED, Phase.FAILED):
        return None  # adopted, or (never) one under way
    return EndedRecovery(request=previous.request, phase=previous.phase,
                         message=previous.message, recovery_target=previous.recovery_target,
                         verify_drill=previous.verify_drill, start_time=previous.start_time,
                         completion_time=previous.completion_time)


def refused(req_target: str, message: str, previous: RecoveryStatus | None,
            now: datetime) -> RecoveryStatus:
    """A request not started; what an earlier recovery left stays: its claims, and
    how it ended (``last_ended``)."""
    recorded = req_target[:REQUEST_LENGTH]
    asked = (previous.asked_time if previous is not None and previous.phase == Phase.REFUSED
             and previous.request == recorded and previous.asked_time is not None else now)
    until = _looked_at_until(asked).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RecoveryStatus(request=recorded, phase=Phase.REFUSED,
                          message=(f"{message} (looked at again until {until}; after that, "
                                   "take the annotations off and ask again)")[:2048],
                          asked_time=asked,
                          previous_ordinal=primary_ordinal(previous), ordinal=_highest(previous),
                          kept_volumes=list(previous.kept_volumes) if previous else [],
                          last_ended=_ended(previous))


def withdrawn(recorded: RecoveryStatus | None) -> RecoveryStatus | None:
    """The recover-to annotation is off: a refused request asked again counts anew."""
    if recorded is None or recorded.phase != Phase.REFUSED or recorded.asked_time is None:
        return recorded
    return recorded.model_copy(update={"asked_time": None})


def begin(req: Request, source: PhysicalSource, policy: str, previous: RecoveryStatus | None,
          now: datetime, *, fingerprint: str) -> RecoveryStatus:
    """``fingerprint``: the policy's (archiving_policy.fingerprint), as it begins."""
    return RecoveryStatus(
        request=req.target, phase=Phase.STOPPING_WRITES,
        message="stopping the apps and the primary",
        recovery_target=source.target, backup_policy=policy, archive_fingerprint=fingerprint,
        repository_path=source.repository_path, verify_drill=req.verify_drill,
        previous_ordinal=primary_ordinal(previous), ordinal=_highest(previous) + 1,
        start_time=now,
        steps=[RecoveryStep(name=STOP_WRITES, start_time=now)],
        kept_volumes=list(previous.kept_volumes) if previous else [])


def with_plan(t: EffectiveTenant, recovery: RecoveryStatus | None,
              policy: BackupPolicySpec | None) -> EffectiveTenant:
    """The tenant as the recovery's phase wants it built."""
    phase = recovery.phase if recovery is not None else None
    if phase in ACTIVE:
        # The recovery holds the database until it ends: a suspension (a suspend
        # window opening at night) or PostgreSQL switched off would kill the
        # restore or the old primary it rolls back to, and leave it waiting for a
        # pod that never comes. They take effect once it has ended.
        t = replace(t, suspend=False, postgres=replace(t.postgres, enabled=True))
    t = replace(t, primary_ordinal=primary_ordinal(recovery),
                primary_stopped=phase == Phase.STOPPING_WRITES,
                # Back with the switch-over, or once rolled back: never while
                # the Service may still reach a database being replaced. (The
                # read replicas too: they clone the restored primary again.)
                writes_stopped=phase in ACTIVE - {Phase.SWITCHING_OVER})
    if (recovery is not None and phase in (Phase.RESTORING, Phase.VERIFYING)
            and policy is not None and policy.continuous_archiving is not None):
        assert recovery.repository_path and recovery.recovery_target  # set by begin
        # Archiving waits for the switch-over: a restore that fails its
        # verification must leave no incarnation in the bucket (the policy
        # reads the newest one as the tenant's).
        t = replace(t, archiving=None, restore=Restore(
            source_tenant=t.name, repository_path=recovery.repository_path,
            target=recovery.recovery_target, storage=policy.storage,
            cipher=policy.continuous_archiving.repository_cipher_secret_ref))
    return t


def plan(before: RecoveryStatus | None, after: RecoveryStatus | None) -> RecoveryStatus | None:
    """The recovery to build the tenant from, ``after`` this reconcile's step.

    The switch-over (apps back, the restore's settings off the primary) takes
    effect from the reconcile after the one that decides it, once the status
    says ``SwitchingOver``: objects are applied before the status is written,
    and whoever reads ``Restoring`` or ``Verifying`` must never meet an app
    running on a database not yet verified. The recovery stays active
    meanwhile, so the tenant is not Ready. Every other step takes effect at
    once (those that stop writes leave the status lagging on the safe side)."""
    if (after is not None and after.phase == Phase.SWITCHING_OVER
            and before is not None and before.phase != Phase.SWITCHING_OVER):
        return before
    return after


@dataclass(frozen=True)
class Facts:
    """What the reconcile observed for the recovery's next step."""

    now: datetime
    pods: Mapping[str, Mapping[str, Any]]  # the tenant's pods, by name
    primary: Mapping[str, Any] | None  # the primary's live StatefulSet
    job: Mapping[str, Any] | None  # the verification Job, while verifying
    apps: Sequence[Mapping[str, Any]] = ()  # the tenant's app Deployments, live


def advance(recovery: RecoveryStatus, facts: Facts) -> RecoveryStatus:
    """The next state of an active recovery, from what is observed."""
    now = facts.now
    if recovery.phase == Phase.STOPPING_WRITES:
        old = facts.pods.get(postgres.primary_pod(recovery.previous_ordinal))
        apps = [n for n, p in facts.pods.items() if _component(p) == APP_COMPONENT]
        # The old primary's and the apps' absence from the pods seen is not
        # enough: a StatefulSet or Deployment controller that has not taken the
        # scale to zero in yet would make a pod again (a ReplicaSet replaces an
        # app pod that went away by itself until its own scale is lowered).
        unscaled = [f"Deployment {d['metadata']['name']}"
                    for d in facts.apps if not scaled_to_zero(d)]
        if not scaled_to_zero(facts.primary):
            unscaled.append(f"StatefulSet {postgres.NAME}")
        if old is None and not apps and not unscaled:
            return _next(recovery, now, Phase.RESTORING, RESTORE,
                         "the apps and the primary are stopped",
                         f"restoring {recovery.repository_path} to "
                         f"{recovery.recovery_target} into a new volume")
        waiting = [*apps, *([postgres.primary_pod(recovery.previous_ordinal)] if old else [])]
        what = (f"{', '.join(sorted(waiting))} to stop" if waiting
                else f"{', '.join(sorted(unscaled))} to scale to zero")
        if _past(recovery, now, config.RECOVERY_STOP_DEADLINE_SECONDS):
            # Nothing was restored: the old database comes back as it was.
            return roll_back(recovery, now, (
                f"the writes did not stop within {int(config.RECOVERY_STOP_DEADLINE_SECONDS)} s "
                f"(still waiting for {what})"))
        return replace_message(recovery, f"waiting for {what}")
    if recovery.phase == Phase.RESTORING:
        pod = facts.pods.get(postgres.primary_pod(recovery.ordinal))
        if pod_health.ready(pod) and on_newest_template(pod, facts.primary):
            return _next(recovery, now, Phase.VERIFYING, VERIFY,
                         "the restored primary is Ready", "verifying the restored database")
        failure = restore_failure(pod)
        if failure is None and _past(recovery, now, config.RECOVERY_RESTORE_DEADLINE_SECONDS):
            failure = (f"the restore did not finish within "
                       f"{int(config.RECOVERY_RESTORE_DEADLINE_SECONDS)} s")
        if failure is not None:
            return roll_back(recovery, now, failure)
        return recovery
    if recovery.phase == Phase.VERIFYING:
        result = job_result(facts.job, facts.pods)
        if result is None:
            if _past(recovery, now, config.RECOVERY_VERIFY_DEADLINE_SECONDS):
                where = ("its Job was never made: see the tenant's events" if facts.job is None
                         else f"see Job {facts.job['metadata']['name']}")
                return roll_back(recovery, now, (
                    f"the verification did not finish within "
                    f"{int(config.RECOVERY_VERIFY_DEADLINE_SECONDS)} s ({where})"))
            return recovery
        passed, message = result
        if passed:
            return _next(recovery, now, Phase.SWITCHING_OVER, SWITCH_OVER,
                         f"verified: {message}",
                         "restarting the primary without the restore, then the apps")
        return roll_back(recovery, now, f"the verification failed: {message}")
    if recovery.phase == Phase.SWITCHING_OVER:
        if not switched(facts.primary, recovery.ordinal):
            if _past(recovery, now, config.RECOVERY_SWITCH_OVER_WARNING_SECONDS):
                # Nothing to roll back to (the apps write to the restored database
                # already), and the recovery holds the tenant (no suspension, no
                # other recovery) until it ends: a person must look, and be told.
                return replace_message(recovery, (
                    f"verified, but the primary {postgres.primary_pod(recovery.ordinal)} "
                    "has not come back without the restore's settings within "
                    f"{int(config.RECOVERY_SWITCH_OVER_WARNING_SECONDS)} s: look at that "
                    "pod (its events and log); the recovery ends once it serves"))
            return recovery
        kept = postgres.data_claim(postgres.NAME, recovery.previous_ordinal)
        done = _finish(recovery, now, Phase.SUCCEEDED,
                       f"the database is restored to {recovery.recovery_target}; the apps "
                       "are scaled back up (AppsReady says when they serve); the old "
                       f"database's volume {kept} is kept until you delete it",
                       "the primary runs the restored database")
        return done.model_copy(
            update={"kept_volumes": [*recovery.kept_volumes, kept][-KEPT_VOLUMES_MAX:]})
    if recovery.phase == Phase.ROLLING_BACK:
        restored = postgres.primary_pod(recovery.ordinal)
        old = facts.pods.get(postgres.primary_pod(recovery.previous_ordinal))
        failure = recovery.steps[-2].message if len(recovery.steps) > 1 else None
        claim = postgres.data_claim(postgres.NAME, recovery.ordinal)
        if (restored not in facts.pods and pod_health.ready(old)
                and on_newest_template(old, facts.primary)):
            ending, step = "the tenant runs its old database again", "the old database is back"
        elif _past(recovery, now, config.RECOVERY_ROLL_BACK_DEADLINE_SECONDS):
            if restored in facts.pods:
                # The postgres Service selects every primary pod: ended now, the
                # apps would come back and write to the restored database, which
                # failed (or never reached) its verification, and split the writes
                # with the old one once it is back. The StatefulSet deletes the
                # restored pod only once the old one is Ready: a person decides.
                return replace_message(recovery, (
                    f"{failure or 'the recovery failed'}; the old primary "
                    f"{postgres.primary_pod(recovery.previous_ordinal)} was not Ready within "
                    f"{int(config.RECOVERY_ROLL_BACK_DEADLINE_SECONDS)} s and {restored} (the "
                    "restored database) still runs, so the apps stay stopped: mend the old "
                    f"primary, or delete pod {restored} (its volume {claim} is kept) to let "
                    "the roll back end"))
            # The apps come back (to a database that may not answer yet), and
            # the tenant may be suspended or recovered again: not held for ever.
            ending = (f"rolled back, but the old primary "
                      f"{postgres.primary_pod(recovery.previous_ordinal)} was not Ready "
                      f"within {int(config.RECOVERY_ROLL_BACK_DEADLINE_SECONDS)} s: look at it")
            step = "the old database is not back yet"
        else:
            return replace_message(recovery, (
                f"{failure or 'the recovery failed'}; waiting for the old primary to be "
                f"Ready and {restored} to stop"))
        done = _finish(recovery, now, Phase.FAILED,
                       f"{failure or 'the recovery failed'}; {ending}; the restore's volume "
                       f"{claim} is kept until you delete it", step)
        return done.model_copy(
            update={"kept_volumes": [*recovery.kept_volumes, claim][-KEPT_VOLUMES_MAX:]})
    return recovery


def _past(recovery: RecoveryStatus, now: datetime, seconds: float) -> bool:
    """Whether the current step began more than ``seconds`` ago."""
    started = recovery.steps[-1].start_time if recovery.steps else now
    return now - started > timedelta(seconds=seconds)


def replace_message(recovery: RecoveryStatus, message: str) -> RecoveryStatus:
    return recovery.model_copy(update={"message": message[:2048]})


def _closed(steps: Sequence[RecoveryStep], now: datetime, message: str) -> list[RecoveryStep]:
    out = list(steps)
    if out and out[-1].completion_time is None:
        out[-1] = out[-1].model_copy(update={"completion_time": now, "message": message[:1024]})
    return out


def _next(recovery: RecoveryStatus, now: datetime, phase: RecoveryPhase, step: str,
          done: str, doing: str) -> RecoveryStatus:
    steps = [*_closed(recovery.steps, now, done), RecoveryStep(name=step, start_time=now)]
    return recovery.model_copy(update={"phase": phase, "message": doing, "steps": steps})


def source_kept(recovery: RecoveryStatus | None, policy: BackupPolicySpec | None,
                now: datetime) -> RecoveryStatus | None:
    """The recovery, rolled back if its restore lost its source mid-way.

    The restore's settings come from the BackupPolicy it restores from. Deleted,
    or its archiving turned off, before the restored database is verified: the
    primary's pod on the new volume would start without them as a new, empty
    database, and a verification without a drill's queries (promoted, nothing
    replayed after the moment) would pass it.
    """
    if recovery is None or recovery.phase not in _NEEDS_SOURCE:
        return recovery
    if policy is not None and policy.continuous_archiving is not None:
        if recovery.archive_fingerprint in (None, archiving_policy.fingerprint(policy)):
            return recovery
        # Moved to another bucket (or cipher) mid-way: the primary would restart
        # its restore from the same repository path in a place that is not it.
        why = ("changed its storage or repository cipher since the restore began (the "
               "repository is not where it was)")
    else:
        why = "is gone" if policy is None else "no longer archives (spec.continuousArchiving)"
    return roll_back(recovery, now, f"BackupPolicy {recovery.backup_policy}, whose archive "
                                    f"this restores, {why}")


def roll_back(recovery: RecoveryStatus, now: datetime, failure: str) -> RecoveryStatus:
    """The failed step closed with ``failure``; back to the old database."""
    return _next(recovery, now, Phase.ROLLING_BACK, ROLL_BACK, failure,
                 f"{failure}; rolling back to the old database")


def _finish(recovery: RecoveryStatus, now: datetime, phase: RecoveryPhase, message: str,
            step_message: str) -> RecoveryStatus:
    return recovery.model_copy(update={
        "phase": phase, "message": message[:2048], "completion_time": now,
        "steps": _closed(recovery.steps, now, step_message)})


def _component(pod: Mapping[str, Any]) -> str | None:
    value = (pod.get("metadata", {}).get("labels") or {}).get(COMPONENT_LABEL)
    return str(value) if value is not None else None


def scaled_to_zero(workload: Mapping[str, Any] | None) -> bool:
    """Whether a StatefulSet or Deployment asks for no pod and its controller has
    seen that and has none left."""
    if workload is None:
        return False
    spec, state = workload.get("spec") or {}, workload.get("status") or {}
    return (int(spec.get("replicas", 1)) == 0 and status_observed(workload)
            and int(state.get("replicas") or 0) == 0)


def app_deployments(live: Mapping[tuple[str, str], Mapping[str, Any]]
                    ) -> list[Mapping[str, Any]]:
    """The app Deployments among a tenant's observed children (by kind and name)."""
    return [obj for (kind, _), obj in live.items()
            if kind == "Deployment" and _component(obj) == APP_COMPONENT]


def on_newest_template(pod: Mapping[str, Any] | None,
                       statefulset: Mapping[str, Any] | None) -> bool:
    """Whether ``pod`` was made from its StatefulSet's newest template, as the
    controller has seen it: a pod the recovery waits for must be the restore's
    (or, rolled back, the old database's with archiving), not one made from
    the template being left."""
    if pod is None or statefulset is None or not status_observed(statefulset):
        return False
    revision = (statefulset.get("status") or {}).get("updateRevision")
    labels = pod.get("metadata", {}).get("labels") or {}
    return bool(revision) and labels.get(REVISION_LABEL) == revision


def restore_failure(pod: Mapping[str, Any] | None) -> str | None:
    """Why the restoring primary will not come up, once its server exited in error
    ``RESTORE_ATTEMPTS`` times (each start retries the restore), or None."""
    if pod is None:
        return None
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != "postgres":
            continue
        last = (status.get("lastState") or {}).get("terminated") or {}
        if int(status.get("restartCount") or 0) >= RESTORE_ATTEMPTS and last.get("exitCode"):
            return (f"the restore failed {status['restartCount']} times (exit code "
                    f"{last['exitCode']}; kubectl logs {pod['metadata']['name']} -c postgres "
                    "--previous)")
    return None


def job_result(job: Mapping[str, Any] | None,
               pods: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str] | None:
    """(passed, the runner's message) once the verification Job ended, else None."""
    if job is None:
        return None
    ended = job_conditions(job)
    if "Complete" not in ended and "Failed" not in ended:
        return None
    name = job["metadata"]["name"]
    # The drill runner's result line (its reader also finds it in a log tail), or
    # the end of what it printed.
    message = str(result_of(job_messages(pods.values(), name), outcome.parse_result,
                            log_tail_as_message=True).get("message") or "")[:1024]
    if not message:
        message = "the runner's result is gone" if "Complete" in ended else (
            f"Job {name} failed (kubectl logs job/{name})")
    return "Complete" in ended and "Failed" not in ended, message


def switched(statefulset: Mapping[str, Any] | None, ordinal: int) -> bool:
    """The primary's StatefulSet runs, Ready, a template without the restore, at ``ordinal``."""
    if statefulset is None:
        return False
    spec, state = statefulset.get("spec") or {}, statefulset.get("status") or {}
    if (spec.get("ordinals") or {}).get("start", 0) != ordinal:
        return False
    for container in spec.get("template", {}).get("spec", {}).get("containers") or []:
        if any(str(e.get("name", "")).startswith(RESTORE_OPTION_PREFIX) or
               e.get("name") == "STACKFORGE_RESTORE_TARGET" for e in container.get("env") or []):
            return False
    return (status_observed(statefulset)
            and bool(state.get("updateRevision"))
            and state.get("updateRevision") == state.get("currentRevision")
            and int(state.get("readyReplicas") or 0) >= 1)


def _marks(ended: RecoveryStatus) -> dict[str, str]:
    """The annotations of the claim a recovery ended on: its start, as the status
    writes it, and its request (a tenant made again answers it once, too)."""
    written = ended.model_dump(mode="json", by_alias=True, include={"start_time", "request"})
    return {SERVING_ANNOTATION: str(written["startTime"]),
            REQUEST_MARK_ANNOTATION: str(written["request"])}


def _claim(ordinal: int) -> str:
    return postgres.data_claim(postgres.NAME, ordinal)


def _ended_on(recovery: RecoveryStatus | None) -> str | None:
    """The claim an ended recovery left the database on (None: none has ended)."""
    if recovery is None or recovery.start_time is None \
            or recovery.phase not in (Phase.SUCCEEDED, Phase.FAILED):
        return None
    return _claim(primary_ordinal(recovery))


def _switched_to(recovery: RecoveryStatus | None) -> str | None:
    """The restored claim, once the apps write to it (the switch-over begins)."""
    if recovery is None or recovery.start_time is None \
            or recovery.phase != Phase.SWITCHING_OVER:
        return None
    return _claim(recovery.ordinal)


def serving_claim(before: RecoveryStatus | None,
                  after: RecoveryStatus | None) -> tuple[str, dict[str, str]] | None:
    """(claim, annotations) to write when this pass begins a switch-over or ends a
    recovery: the claim the database is on from now on, marked with the recovery's
    start. Marked as the switch-over begins, when the apps start writing there: a
    tenant made again before the recovery ended adopted the newest claim marked,
    an earlier recovery's, and served the database without those writes."""
    serving = _ended_on(after) or _switched_to(after)
    if serving is None or after is None or (before is not None and before.phase == after.phase
                                            and before.request == after.request):
        return None
    return serving, _marks(after)


def unmarked_claim(recovery: RecoveryStatus | None,
                   claims: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, str]] | None:
    """The claim an ended recovery left the database on, when it lacks its mark:
    the pass that ended it died before marking, or it ended before claims were
    marked. (Asked while volumes are kept: only then are there claims to doubt.)"""
    serving = _ended_on(recovery)
    if serving is None or recovery is None:
        return None
    for claim in claims:
        meta = claim.get("metadata") or {}
        if meta.get("name") == serving and not meta.get("deletionTimestamp"):
            if (meta.get("annotations") or {}).get(SERVING_ANNOTATION):
                return None
            return serving, _marks(recovery)
    return None


def _mark_time(mark: str | None) -> datetime | None:
    try:
        when = datetime.fromisoformat(mark) if mark else None
    except ValueError:
        return None  # not a time: as if unmarked
    return when if when is not None and when.tzinfo is not None else None


def adopted(claims: Sequence[Mapping[str, Any]], now: datetime, *,
            started_at: int = 0) -> RecoveryStatus | str | None:
    """For a tenant without a recovery record whose primary has no StatefulSet of
    its own (or one started at ``started_at`` > 0: its status write was lost):
    the database among the primary claims found (None: pod number 0, as a new
    tenant), or why it cannot tell. The newest claim a recovery marked; else the
    only claim; never a guess between unmarked ones."""
    found: dict[int, Mapping[str, str]] = {}
    for claim in claims:
        meta = claim.get("metadata") or {}
        ordinal = postgres.primary_claim_ordinal(str(meta.get("name")))
        if ordinal is not None and not meta.get("deletionTimestamp"):
            found[ordinal] = meta.get("annotations") or {}
    if set(found) <= {0} and started_at == 0:
        return None
    marked = [(when, ordinal) for ordinal, notes in found.items()
              if (when := _mark_time(notes.get(SERVING_ANNOTATION))) is not None]
    if marked:
        serving = max(marked)[1]
    elif len(found) == 1:
        [serving] = found
    else:
        names = ", ".join(_claim(o) for o in sorted(found)) or "none"
        return (f"the primary's pod number is {started_at} but the database claims here "
                f"({names}) do not say which holds the database: none is marked by a "
                f"recovery ({SERVING_ANNOTATION}), and starting on one could serve an old "
                "database as current. Delete the claims that do not hold the database, "
                f"or annotate the one that does: kubectl annotate pvc <claim> "
                f"{SERVING_ANNOTATION}={now:%Y-%m-%dT%H:%M:%SZ}")
    kept = [_claim(o) for o in sorted(found) if o != serving]
    return RecoveryStatus(
        request=str(found[serving].get(REQUEST_MARK_ANNOTATION) or "")[:REQUEST_LENGTH],
        phase=Phase.ADOPTED, previous_ordinal=serving, ordinal=max(found),
        message=(f"made again over the claims a recovery left: the database is "
                 f"{_claim(serving)}'s")[:2048],
        kept_volumes=kept[-KEPT_VOLUMES_MAX:])


def forget_deleted(recovery: RecoveryStatus | None,
                   claims: Collection[str]) -> RecoveryStatus | None:
    """The recovery without the kept volumes no longer among ``claims`` (deleted)."""
    if recovery is None or all(c in claims for c in recovery.kept_volumes):
        return recovery
    return recovery.model_copy(update={
        "kept_volumes": [c for c in recovery.kept_volumes if c in claims]})


def events(old: RecoveryStatus | None,
           new: RecoveryStatus | None) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Kubernetes Events a change of phase makes."""
    if new is None or (old is not None and old.phase == new.phase
                       and old.request == new.request):
        return []  # nothing, or a new message within a phase
    reasons = {
        Phase.REFUSED: ("Warning", "RecoveryRefused"),
        Phase.STOPPING_WRITES: ("Normal", "RecoveryStarted"),
        Phase.RESTORING: ("Normal", "RecoveryRestoring"),
        Phase.VERIFYING: ("Normal", "RecoveryVerifying"),
        Phase.SWITCHING_OVER: ("Normal", "RecoverySwitchingOver"),
        Phase.ROLLING_BACK: ("Warning", "RecoveryRollingBack"),
        Phase.SUCCEEDED: ("Normal", "RecoverySucceeded"),
        Phase.FAILED: ("Warning", "RecoveryFailed"),
        Phase.ADOPTED: ("Normal", "DatabaseAdopted"),
    }
    kind, reason = reasons[new.phase]
    return [(kind, reason, new.message or new.phase.value)]

