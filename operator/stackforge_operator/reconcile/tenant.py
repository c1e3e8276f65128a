"""Reconcile one StackForgeTenant: observe -> desired -> diff -> apply -> status.

Idempotent and restartable at any point: children have deterministic names
and are applied with server-side apply, so a run interrupted anywhere (even
by SIGKILL) is completed by the next one without duplicates. A converged
tenant costs reads only.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from stackforge_operator import (
    API_GROUP,
    API_VERSION,
    clock,
    config,
    kube,
    pod_health,
    schedule,
    status,
    suspend_windows,
)
from stackforge_operator.builders import (
    backup_network,
    consul,
    credentials,
    ingress,
    kafka,
    monitoring,
    pdb,
    postgres,
    stack,
)
from stackforge_operator.builders import secrets_names as names
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.cost import estimate
from stackforge_operator.models.conditions import ISOLATED
from stackforge_operator.models.effective import EffectiveTenant, resolve
from stackforge_operator.models.tenant import (
    BootstrapStatus,
    ComponentStatus,
    EvidenceStatus,
    RecoveryStatus,
    StackForgeTenantSpec,
    StackForgeTenantStatus,
    SuspendWindowStatus,
    admin_secret_name,
)
from stackforge_operator.notify.sender import Delivery
from stackforge_operator.reconcile import (
    archiving_policy,
    bootstrap,
    foreign_claims,
    immutable,
    isolation,
    recovery,
    storage,
    tenant_bootstrap,
    tenant_evidence,
    tenant_notify,
    tenant_recovery,
    tenant_settled,
)
from stackforge_operator.reconcile import tenant_observe as observe
from stackforge_operator.reconcile.common import post_transitions, status_changed, status_patch
from stackforge_operator.reconcile.diff import needs_apply, stamped

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"
KIND = "StackForgeTenant"

# How soon to look again: converged, converging, or waiting for a human.
RESYNC_SECONDS = config.RESYNC_SECONDS
CONVERGING_SECONDS = 5.0
STALLED_SECONDS = config.STALLED_RECHECK_SECONDS

# Namespaced kinds a tenant's children can be; pruning looks at exactly these.
MANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)
CERTIFICATE_KIND = ("cert-manager.io/v1", "Certificate")
# Only where the Prometheus Operator is installed (builders/monitoring.py).
MONITORING_KINDS: tuple[tuple[str, str], ...] = (
    (monitoring.API_VERSION, "PrometheusRule"),
    (monitoring.API_VERSION, "ServiceMonitor"),
)


@dataclass(frozen=True)
class Outcome:
    """What a reconcile did, for logs, metrics and tests."""

    applied: tuple[str, ...]
    pruned: tuple[str, ...]
    progress: status.Progress
    requeue_after: float
    # The tenant as the status write returned it (None: nothing written).
    latest: dict[str, Any] | None = None
    # Settled: nothing changes by itself for this long unless an input does
    # (tenant_settled.py); None: look again at every resync.
    quiet_seconds: float | None = None


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": KIND,
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned(manifest: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    # The namespace is not the tenant's to own: it was there first (the tenant
    # lives in it), and a namespaced owner of a cluster-scoped object is invalid.
    # The operator only applies its labels (Pod Security, tenant).
    if manifest["kind"] != "Namespace":
        manifest["metadata"]["ownerReferences"] = [owner]
    return manifest


def _admin_passwords(t: EffectiveTenant, secrets: Sequence[dict[str, Any]]) -> dict[str, str]:
    """username -> password of every admin account: generated (in the Secrets just
    built) or the customer's own."""
    built = {s["metadata"]["name"]: s for s in secrets}
    passwords = {
        a.username: credentials.decode(built[admin_secret_name(a.username)])[
            names.ADMIN_PASSWORD_KEY]
        for a in t.admin_accounts if a.password_secret_ref is None
    }
    passwords.update(observe.supplied_admin_passwords(t))
    return passwords


def _selector(name: str) -> str:
    return f"{TENANT_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"


# Hands deliveries to the sender; must return at once (never waits for a receiver).
Notify = Callable[[Sequence[Delivery]], None]


def reconcile(body: Mapping[str, Any], notify: Notify | None = None) -> Outcome:
    meta = body["metadata"]
    name, generation = meta["name"], int(meta.get("generation", 0))
    old_status = StackForgeTenantStatus.model_validate(body.get("status") or {})
    try:
        spec = StackForgeTenantSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        problem = status.Problem("InvalidSpec", observe.validation_summary(error))
        return _stalled(body, old_status, generation, [problem])
    t = resolve(name, spec, namespace=meta["namespace"])
    try:
        for window_spec in spec.suspend_windows:
            schedule.zone(window_spec.time_zone)
    except schedule.UnknownTimeZoneError as error:
        # The schema allows any zone-shaped name; the zone database decides.
        return _stalled(body, old_status, generation,
                        [status.Problem("UnknownTimeZone", f"spec.suspendWindows: {error}")])
    now = clock.now()
    if (why := suspend_windows.problem(spec.suspend_windows, now)) is not None:
        return _stalled(body, old_status, generation, [status.Problem("InvalidSchedule", why)])
    window = suspend_windows.state(spec.suspend_windows, now)
    if window.suspended:
        # Exactly as spec.suspend: scaled to zero, data and configuration kept.
        t = replace(t, suspend=True)
    live_namespace = kube.get("v1", "Namespace", t.namespace)
    placement = observe.placement_problem(
        meta, (live_namespace or {}).get("metadata", {}).get("labels"))
    if placement is not None:
        return _stalled(body, old_status, generation, [placement])
    if live_namespace and live_namespace["metadata"].get("deletionTimestamp"):
        # The namespace goes, and the tenant in it with it: the API server refuses
        # whatever this would make again (each child's deletion wakes the tenant).
        logger.info("tenant %s: its namespace %s is being deleted; nothing applied",
                    name, t.namespace)
        return Outcome((), (), status.Progress.RECONCILING, STALLED_SECONDS)
    # Read once: they configure the primary's archiving and report backup health.
    policies = observe.backup_policies(t.name, t.namespace)
    t = replace(t, archiving=archiving_policy.archiving(policies))
    created = meta.get("creationTimestamp")
    prepared = bootstrap.prepare(
        t, spec, old_status.bootstrap, datetime.now(UTC),
        tenant_created=datetime.fromisoformat(str(created)) if created else None)
    if isinstance(prepared, bootstrap.Held):
        begun = old_status.bootstrap
        # The primary is read only for a restore that began (held before, no pod runs).
        done = bootstrap.completed_while_held(begun, begun is not None and (
            tenant_bootstrap.primary_ready(
                kube.get("apps/v1", "StatefulSet", postgres.NAME, t.namespace))),
            datetime.now(UTC))
        if done is not None:
            # Restored all the same: the next pass builds the tenant without it.
            _bootstrap_events(body, old_status.bootstrap, done)
            return _held(body, old_status, generation, status.Progress.RECONCILING, "Restored",
                         "restored; the source is not needed any more", restored=done)
        # Nothing before the restore is set up: the primary would initialise instead.
        return _held(body, old_status, generation, prepared.progress, prepared.reason,
                     prepared.message)
    if prepared is not None:
        t = replace(t, restore=prepared.restore)

    # Asked once: the children observed and the children desired must agree.
    with_certificates = observe.cert_manager_installed()
    with_monitoring = observe.prometheus_operator_installed()
    live = _observe_children(t, name, with_certificates=with_certificates,
                             with_monitoring=with_monitoring)
    # An in-place recovery (annotations) decides how the database and apps are built.
    recovering = tenant_recovery.run(body, t, old_status.recovery, policies, live,
                                     datetime.now(UTC))
    if recovering.held is not None:
        return _stalled(body, old_status, generation,
                        [status.Problem("DatabaseClaimsAmbiguous", recovering.held)])
    t = recovering.t
    dumped = None
    if prepared is not None and prepared.dump is not None:
        dumped = tenant_bootstrap.run(t, prepared, live, datetime.now(UTC))
        if dumped.pending:
            # Nothing may write to (or follow) the database before the dump is in.
            t = replace(t, writes_stopped=True)
    elif prepared is not None:
        tenant_bootstrap.finished_job(t, prepared.recorded, live)
    rotation = (meta.get("annotations") or {}).get(credentials.ROTATE_ANNOTATION) or None
    live_secrets = {n: s for (k, n), s in live.items() if k == "Secret"}
    handled = {
        n: (s["metadata"].get("annotations") or {}).get(credentials.ROTATION_HANDLED_ANNOTATION, "")
        for n, s in live_secrets.items()
    }
    secrets = credentials.build(
        t,
        existing={n: credentials.decode(s) for n, s in live_secrets.items()},
        existing_rotation=handled,
        rotation_request=rotation,
    )
    rotated = bool(rotation) and any(
        n in live_secrets and handled.get(n) != rotation
        for n in (m["metadata"]["name"] for m in secrets)
    )
    if t.postgres.enabled:
        # Not a credentials Secret of its own (no rotation record): it follows them.
        secrets.append(postgres.admin_roles_secret(t, _admin_passwords(t, secrets)))
    if prepared is not None and (dumped is None or dumped.pending):
        secrets += prepared.copies
    evidence = old_status.evidence
    if tenant_evidence.due(t.isolate, old_status, datetime.now(UTC)):
        # Before the isolation's own changes are applied, as the runbook's step 2.
        evidence = tenant_evidence.capture(t, body, policies, datetime.now(UTC))
        if evidence.location is not None:
            kube.record_event(dict(body), "Normal", "EvidenceCaptured",
                              f"{evidence.files} files written to {evidence.location}")
    if t.isolate:
        # Timed after the capture (which may take a while): the policies that
        # refuse new connections are written moments later (config.py).
        t = replace(t, isolation=isolation.timed(old_status.conditions, datetime.now(UTC)))
    owner = owner_reference(body)
    desired = [_owned(m, owner) for m in stack.desired_children(
        t, secrets=secrets, tls=spec.tls,
        rotation=credentials.template_rotation(rotation, handled))]
    issuer = spec.tls.issuer_ref if spec.tls else None
    if issuer is not None and t.domain and with_certificates:
        desired.append(_owned(ingress.build_certificate(t, issuer.name, issuer.kind), owner))
    if with_monitoring:
        desired += [_owned(m, owner) for m in monitoring.build(t)]
    desired += [_owned(m, owner) for m in recovering.children]
    problems: list[status.Problem] = []
    if dumped is not None:
        desired += [_owned(m, owner) for m in dumped.children]
        problems += dumped.problems
    if t.restore is not None:
        # The archive may be another tenant's: no policy of this one opens its endpoint.
        try:
            desired.append(_owned(backup_network.restore_egress(
                t, t.restore.storage, storage.endpoint_addresses(t.restore.storage.endpoint)),
                owner))
        except ValueError as error:
            problems.append(status.Problem("RestoreUnreachable", str(error)))

    live[("Namespace", t.namespace)] = live_namespace or {}
    desired = _kafka_budget_as_running(t, desired, live, owner)
    applied: list[str] = []
    # The namespace's claims, read once in the pass and only if a StatefulSet
    # needs them (_grow_volumes): a new tenant makes several StatefulSets.
    claims = functools.cache(lambda: {
        c["metadata"]["name"]: c
        for c in kube.list_objects("v1", "PersistentVolumeClaim", namespace=t.namespace)})
    for manifest in desired:
        key = (manifest["kind"], manifest["metadata"]["name"])
        current = live.get(key) or None
        if key == ("StatefulSet", kafka.NAME) and current is not None:
            refused = immutable.kafka_voters_change(manifest, current)
            if refused is not None:
                # The running cluster stays as it is; the tenant says why.
                problems.append(status.Problem("KafkaVotersFixed", refused))
                continue
        if key == ("StatefulSet", consul.NAME) and current is not None:
            refused = immutable.consul_quorum_loss(manifest, current)
            if refused is not None:
                problems.append(status.Problem("ConsulQuorumKept", refused))
                continue
        if key[0] == "StatefulSet" and foreign_claims.may_take_claims(manifest, current) and (
                foreign := foreign_claims.problem(name, foreign_claims.foreign_claims(
                    name, manifest, claims()))) is not None:
            # Made, or given more pods, it would mount them at once (and the
            # growth below would resize them).
            problems.append(foreign)
            continue
        if key[0] == "StatefulSet":
            # Also when it is made anew: over claims kept from before (the
            # component turned off and on, the tenant made again), which its
            # larger templates would never grow.
            problems += _grow_volumes(t, manifest, current, claims, applied)
            if current is not None:
                manifest = immutable.keep_live_claim_templates(manifest, current)
        manifest = stamped(manifest)
        if needs_apply(manifest, current):
            try:
                live[key] = kube.apply(manifest)
            except kube.Refused as error:
                # Built from a spec the schema admits but the child's kind does not
                # (a volume of size 0): the same spec gets the same answer, so the
                # tenant says why instead of retrying unseen. The rest is applied.
                problems.append(status.Problem("ChildRefused", str(error)))
                continue
            except kube.Forbidden as error:
                # A policy webhook's denial or a missing RBAC verb: raised, it ended
                # every pass before the status write, Ready staying True with an
                # old observedGeneration and the reason in the operator's log only.
                # The tenant is not Ready while it holds: every resync tries again.
                problems.append(status.Problem("ChildForbidden", str(error)))
                continue
            applied.append(f"{key[0]}/{key[1]}")
    pruned = _prune(t, live, {*stack.by_key(desired), *(dumped.kept if dumped else ())},
                    meta["uid"])
    if t.postgres.enabled:
        _refresh_primary_files(t, live)
    evidence_wait_ends = None
    if t.isolation is not None:
        spare = isolation.spared(evidence is not None and evidence.location is not None,
                                 t.isolation.since, datetime.now(UTC))
        _close_unrollable_sessions(t, t.isolation.since, spare)
        if spare:
            # Looked at again then, settled or not: the spared pods go at that moment.
            evidence_wait_ends = isolation.evidence_wait_ends(t.isolation.since)

    return _report(body, old_status, t, spec, window, evidence, generation, desired, live,
                   tuple(applied), pruned, rotated, problems, notify, policies,
                   dumped.recorded if dumped else prepared.recorded if prepared else None,
                   recovering.recovery, evidence_wait_ends)


def _refresh_primary_files(t: EffectiveTenant,
                           live: Mapping[tuple[str, str], dict[str, Any]]) -> None:
    """Touch the primary's pod when the ConfigMap or Secret its sidecar reads
    while it runs changed, so that the kubelet writes their files now
    (postgres.LIVE_FILES_ANNOTATION). Read from the pods' watch cache: a
    converged tenant costs no request."""
    wanted = postgres.live_files_version(
        live.get(("ConfigMap", postgres.INIT_CONFIG)),
        live.get(("Secret", names.POSTGRES_ADMIN_ROLES_SECRET)))
    if wanted is None or t.suspend or t.primary_stopped:
        return  # a pod made from now on reads them as they are
    name = postgres.primary_pod(t.primary_ordinal)
    # Listed, not read by name: the pods' cache answers a list, an empty one
    # included (a name it does not hold is asked of the API server).
    pod = next(iter(kube.list_objects("v1", "Pod", namespace=t.namespace,
                                      label_selector=f"{TENANT_LABEL}={t.name}",
                                      field_selector=f"metadata.name={name}")), None)
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return
    annotations = pod["metadata"].get("annotations") or {}
    if annotations.get(postgres.LIVE_FILES_ANNOTATION) != wanted:
        kube.annotate("v1", "Pod", name, t.namespace, {postgres.LIVE_FILES_ANNOTATION: wanted})


def _close_unrollable_sessions(t: EffectiveTenant, since: datetime,
                               spare: Sequence[str]) -> None:
    """Delete the Kafka, Consul, read replica, app, Kong and pooler pods made before
    the isolation started (reconcile/isolation.py says why not a rolling
    replacement), but those of ``spare`` (waiting for the evidence bundle)."""
    for pod in isolation.pods_to_replace(observe.tenant_pods(t), since, spare):
        logger.info("tenant %s is isolated: deleting pod %s, which may hold sessions "
                    "opened before", t.name, pod)
        kube.delete("v1", "Pod", pod, t.namespace)


def _kafka_budget_as_running(t: EffectiveTenant, desired: list[dict[str, Any]],
                             live: Mapping[tuple[str, str], Any],
                             owner: dict[str, Any]) -> list[dict[str, Any]]:
    """``desired`` with Kafka's disruption budget judged by the cluster that runs.

    A Kafka count that changes without the field (a tier's default) is refused
    (the StatefulSet stays as it runs, immutable.kafka_voters_change), but the
    budget followed the refused count: from three nodes to the Growth tier's one
    the budget was pruned, and a drain could take two of three voters."""
    key = ("StatefulSet", kafka.NAME)
    running = live.get(key)
    wanted = next((m for m in desired if (m["kind"], m["metadata"]["name"]) == key), None)
    if not running or wanted is None or immutable.kafka_voters_change(wanted, running) is None:
        return desired
    as_running = copy.deepcopy(wanted)
    as_running["spec"]["replicas"] = (running.get("spec") or {}).get("replicas", 1)
    budget = ("PodDisruptionBudget", kafka.NAME)
    return [*(m for m in desired if (m["kind"], m["metadata"]["name"]) != budget),
            *(_owned(b, owner) for b in pdb.build(t, [as_running]))]


def _grow_volumes(
    t: EffectiveTenant, desired: dict[str, Any], live: dict[str, Any] | None,
    claims: Callable[[], Mapping[str, Mapping[str, Any]]], applied: list[str]
) -> list[status.Problem]:
    """Resize the claims of a StatefulSet whose storage grew (its templates cannot
    change), or of one about to be made (``live`` None) over smaller kept claims."""
    if live is not None and not immutable.grown_templates(desired, live):
        return []
    problems = []
    for resize in immutable.claim_resizes(desired, claims()):
        patch = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": resize.claim, "namespace": t.namespace},
            "spec": {"resources": {"requests": {"storage": resize.storage}}},
        }
        try:
            kube.apply(patch)
            applied.append(f"PersistentVolumeClaim/{resize.claim}")
        except kopf.TemporaryError as error:
            # Typically a StorageClass without allowVolumeExpansion: a human decides.
            problems.append(status.Problem("VolumeResizeFailed", str(error)))
    return problems


def _observe_children(
    t: EffectiveTenant, name: str, *, with_certificates: bool, with_monitoring: bool
) -> dict[tuple[str, str], dict[str, Any]]:
    kinds = [*MANAGED_KINDS, *([CERTIFICATE_KIND] if with_certificates else []),
             *(MONITORING_KINDS if with_monitoring else ())]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for api_version, kind in kinds:
        for obj in kube.list_objects(api_version, kind, namespace=t.namespace,
                                     label_selector=_selector(name)):
            found[(kind, obj["metadata"]["name"])] = obj
    return found


def _prune(
    t: EffectiveTenant,
    live: Mapping[tuple[str, str], dict[str, Any]],
    desired: Collection[tuple[str, str]],
    uid: str,
) -> tuple[str, ...]:
    """Delete children no longer wanted (a component switched off, isolation on).

    Only objects this tenant controls: others in its namespace carry its label
    too (a BackupPolicy's CronJob and configuration) but belong to their owner.
    """
    pruned = []
    for (kind, child), obj in live.items():
        if kind == "Namespace" or (kind, child) in desired or not obj:
            continue
        if not observe.owned_by(obj, uid):
            continue
        api_version = obj.get("apiVersion") or dict(MANAGED_KINDS).get(kind, "v1")
        if kube.delete(api_version, kind, child, t.namespace):
            pruned.append(f"{kind}/{child}")
    return tuple(pruned)


def _replace_stuck_pods(t: EffectiveTenant, statefulsets: Sequence[Mapping[str, Any]],
                        pods: Sequence[Mapping[str, Any]]) -> None:
    for statefulset in statefulsets:
        for pod in pod_health.stuck_on_an_old_revision(statefulset, pods):
            logger.info("tenant %s: deleting pod %s, broken by the previous template of "
                        "StatefulSet %s, so that it is made from the current one", t.name,
                        pod, statefulset["metadata"]["name"])
            kube.delete("v1", "Pod", pod, t.namespace)


def _stalled(
    body: Mapping[str, Any],
    old_status: StackForgeTenantStatus,
    generation: int,
    problems: Sequence[status.Problem],
) -> Outcome:
    progress, reason, message = status.tenant_progress([], [], problems, suspended=False)
    return _held(body, old_status, generation, progress, reason, message)


def _held(body: Mapping[str, Any], old_status: StackForgeTenantStatus, generation: int,
          progress: status.Progress, reason: str, message: str, *,
          restored: BootstrapStatus | None = None) -> Outcome:
    """Nothing applied: the rollup says why; the rest of the status stays (but
    the bootstrap's record, when ``restored`` is its completion)."""
    conditions = status.merge(
        old_status.conditions, status.rollup(progress, reason, message),
        generation=generation, now=datetime.now(UTC),
    )
    new_status = old_status.model_copy(
        update={"observed_generation": generation, "conditions": conditions,
                "bootstrap": restored or old_status.bootstrap}
    )
    latest = _write_status(body, old_status, new_status)
    logger.warning("tenant %s is held (%s): %s", body["metadata"]["name"], reason, message)
    # Waiting (a restore's source not archived that far yet) ends by itself.
    again = CONVERGING_SECONDS if progress is status.Progress.RECONCILING else STALLED_SECONDS
    return Outcome((), (), progress, again, latest)


def _report(
    body: Mapping[str, Any],
    old_status: StackForgeTenantStatus,
    t: EffectiveTenant,
    spec: StackForgeTenantSpec,
    window: suspend_windows.WindowState,
    evidence: EvidenceStatus | None,
    generation: int,
    desired: Sequence[dict[str, Any]],
    live: Mapping[tuple[str, str], dict[str, Any]],
    applied: tuple[str, ...],
    pruned: tuple[str, ...],
    rotated: bool,
    apply_problems: Sequence[status.Problem],
    notify: Notify | None,
    policies: Sequence[dict[str, Any]],
    restored: BootstrapStatus | None,
    recovered: RecoveryStatus | None,
    evidence_wait_ends: datetime | None,
) -> Outcome:
    now = datetime.now(UTC)
    workloads = [(m, live.get((m["kind"], m["metadata"]["name"])) or None)
                 for m in desired if m["kind"] in stack.WORKLOAD_KINDS]
    states = [status.workload_state(m, obj) for m, obj in workloads]
    pods: list[dict[str, Any]] | None = None
    if any(not s.ready for s in states):
        # Only then are the pods read: they say why (a converged tenant costs no LIST).
        pods = observe.tenant_pods(t)
        states = [status.with_pod_fault(state, obj, pods)
                  for state, (_, obj) in zip(states, workloads, strict=True)]
        _replace_stuck_pods(t, [obj for m, obj in workloads
                                if obj is not None and m["kind"] == "StatefulSet"], pods)
    components = status.component_observations(states)
    problems = [*apply_problems, *observe.missing_references(t, spec),
                *status.stuck_workloads(states)]
    certificate, certificate_condition = observe.certificate(t, spec, now)
    backups, last_backup = observe.backup_health(policies)
    drills, last_drill = observe.drill_health(t.name, t.namespace)
    informational = [backups, drills, certificate_condition]
    progress, reason, message = status.tenant_progress(
        components, informational, problems, suspended=t.suspend
    )
    progress, reason, message = bootstrap.rollup(restored, progress, reason, message)
    if recovery.active(recovered):
        assert recovered is not None
        # Stopped apps and a database being replaced are the recovery's doing.
        progress, reason, message = (
            status.Progress.RECONCILING, "Recovering",
            f"in-place recovery to {recovered.recovery_target}: {recovered.phase.value}: "
            f"{recovered.message or ''}".rstrip(": "))
    in_use = {o.type for o in components}
    lifting = isolation.lifting_until(t.isolate, old_status.conditions, now)
    conditions = status.merge(
        old_status.conditions,
        [*status.rollup(progress, reason, message), *components, *informational,
         status.isolation(t.isolate, lifting)],
        generation=generation,
        now=now,
        drop=status.ALL_COMPONENT_CONDITIONS - in_use,
    )
    if t.isolation is not None:
        # Begun when its moment was taken, which the primary's file is counted from.
        conditions = status.with_transition(conditions, ISOLATED, t.isolation.since)
    kong_live = live.get(("Deployment", "kong")) or {}
    kong_status = kong_live.get("status") or {}
    component_status = [
        ComponentStatus(
            name=s.name,
            kind=status.COMPONENT_CONDITIONS.get(s.component, ("App", ""))[0],
            ready=s.ready,
            replicas=s.replicas,
            ready_replicas=s.ready_replicas,
            message=s.message or None,
        )
        for s in states
    ]
    new_status = StackForgeTenantStatus(
        observed_generation=generation,
        conditions=conditions,
        replicas=int(kong_status.get("replicas") or 0),
        ready_replicas=int(kong_status.get("readyReplicas") or 0),
        selector=observe.kong_selector(t),
        components=component_status,
        components_ready=f"{sum(s.ready for s in states)}/{len(states)}",
        endpoint=f"https://{t.domain}" if t.domain else None,
        cost=estimate(t, suspended_share(spec, now)),
        last_backup=last_backup,
        last_drill=last_drill,
        certificate=certificate,
        suspended=t.suspend,
        suspend_window=SuspendWindowStatus(open=window.suspended,
                                           next_change=window.next_change)
        if spec.suspend_windows else None,
        isolated=t.isolate or lifting is not None,
        evidence=evidence,
        usage=observe.usage(t, old_status.usage, now, pods),
        credentials_rotated_at=now if rotated else old_status.credentials_rotated_at,
        replication=observe.replicas(t, old_status.replication, pods),
        bootstrap=None if restored is None else bootstrap.completed(
            restored, bootstrap.primary_serving(states), now),
        recovery=recovered,
    )
    for kind, event, text in recovery.events(old_status.recovery, recovered):
        kube.record_event(dict(body), kind, event, text)
    _bootstrap_events(body, old_status.bootstrap, new_status.bootstrap)
    incidents, messages = tenant_notify.review(
        new_status, old_status.incidents, policies, spec.notifications, now)
    sends = tenant_notify.deliveries(t.name, t.namespace, spec.notifications, messages)
    if messages and not sends:
        # No channel can be reached (its Secret is missing): announce nothing and
        # remember nothing, so these incidents are announced once one works.
        incidents, messages = old_status.incidents, []
    new_status.incidents = incidents
    # Messages go out only once the incidents they announce are recorded, and
    # that record is written only over the latest status (resourceVersion):
    # a stale read can never announce an incident a second time.
    latest = _write_status(body, old_status, new_status, guarded=bool(messages))
    if messages:
        logger.info("tenant %s: notifying %s", t.name,
                    [f"{m.key} {m.state}" for m in messages])
        if notify is not None:
            notify(sends)
    requeue = RESYNC_SECONDS if progress is status.Progress.READY else (
        STALLED_SECONDS if progress is status.Progress.STALLED else CONVERGING_SECONDS)
    # A failed evidence capture is tried again then; the pods spared for it go then.
    evidence_retry = (tenant_evidence.retry_at(evidence) if t.isolate and evidence is not None
                      and evidence.location is None else None)
    # Each moment is acted on once it has passed, not a resync late (a little
    # after it: a pass a moment early would find it still to come): the lift's
    # report, the evidence's wait and retry.
    for moment in (lifting, evidence_wait_ends, evidence_retry):
        if moment is not None:
            requeue = min(requeue, max(1.0, (moment - now).total_seconds() + 0.5))
    window_change = None
    if window.next_change is not None:
        # On the windows' own clock (clock.py), read once for both uses below.
        until_window = window.next_change - clock.now()
        # Looked at again when a window opens or closes, not up to a resync late.
        requeue = min(requeue, max(1.0, until_window.total_seconds()))
        # A test may move that clock at will: then the window is always due.
        window_change = now if clock.overridden() else now + until_window
    quiet = None
    if progress is status.Progress.READY and not (applied or pruned or messages) \
            and latest is None:
        quiet = tenant_settled.quiet_seconds(
            now, [window_change, tenant_settled.certificate_changes_at(certificate),
                  tenant_settled.usage_stale_at(new_status.usage), lifting,
                  evidence_wait_ends, evidence_retry],
            config.FULL_RESYNC_SECONDS)
    if applied or pruned:
        logger.info("tenant %s: applied %s; pruned %s", t.name, list(applied), list(pruned))
    return Outcome(applied, pruned, progress, requeue, latest, quiet)


def _bootstrap_events(body: Mapping[str, Any], old: BootstrapStatus | None,
                      new: BootstrapStatus | None) -> None:
    for kind, reason, text in bootstrap.events(old, new):
        kube.record_event(dict(body), kind, reason, text)


def _write_status(
    body: Mapping[str, Any],
    old: StackForgeTenantStatus,
    new: StackForgeTenantStatus,
    *,
    guarded: bool = False,
) -> dict[str, Any] | None:
    if not status_changed(body, old, new):
        return None
    meta = body["metadata"]
    try:
        latest = kube.patch_status(
            API, KIND, meta["name"], meta.get("namespace"), status_patch(new),
            resource_version=meta.get("resourceVersion") if guarded else None)
    except kopf.TemporaryError as error:
        if not guarded or not kube.answer_lost(error):
            raise
        # The answer was lost, not necessarily the write. Had it landed, the next
        # reconcile would find the incidents recorded and announce nothing: ask
        # the API server what it holds. (Seen with the connection reset every 2 s.)
        held = kube.get(API, KIND, meta["name"], meta.get("namespace"), fresh=True)
        if held is None or not tenant_notify.recorded(held, new.incidents):
            raise
        latest = held
        logger.info("tenant %s: the status write's answer was lost, but it was written",
                    meta["name"])
    post_transitions(body, old, new)
    return latest


def suspended_share(spec: StackForgeTenantSpec, now: datetime) -> float | None:
    """The share of the week the tenant is kept suspended, for the cost estimate:
    all of it while spec.suspend holds (its nodes are not paid then either; it was
    priced as running), else what its windows cover; None with neither."""
    if spec.suspend:
        return 1.0
    if spec.suspend_windows:
        return suspend_windows.suspended_share(spec.suspend_windows,
                                               suspend_windows.week_start(now))
    return None
