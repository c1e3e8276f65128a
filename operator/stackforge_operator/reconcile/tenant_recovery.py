"""The tenant's reconcile's part of an in-place recovery: what it reads and adds.

reconcile/recovery.py decides; this module observes for it (the tenant's
pods and claims, the verification Job, the policy and drill it names) and
returns the tenant as the recovery's phase wants it built.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from stackforge_operator import API_GROUP, API_VERSION, kube
from stackforge_operator.builders import postgres
from stackforge_operator.builders import recovery as builders
from stackforge_operator.builders.common import Manifest
from stackforge_operator.models.backup import BackupPolicySpec, BackupPolicyStatus
from stackforge_operator.models.drill import DRDrillSpec, QueryCheck
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import RecoveryPhase, RecoveryStatus
from stackforge_operator.reconcile import archiving_policy, drill_recovery, recovery
from stackforge_operator.reconcile import tenant_observe as observe

API = f"{API_GROUP}/{API_VERSION}"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovering:
    """The tenant to build, the recovery to record, and its objects to apply."""

    t: EffectiveTenant
    recovery: RecoveryStatus | None
    children: list[Manifest]
    # Why nothing of the database may start (claims it cannot choose between).
    held: str | None = None


def run(body: Mapping[str, Any], t: EffectiveTenant, recorded: RecoveryStatus | None,
        policies: Sequence[Mapping[str, Any]], live: dict[tuple[str, str], dict[str, Any]],
        now: datetime) -> Recovering:
    """One reconcile's step of the recovery; ``live`` gains the verification Job (so
    that it is pruned once the recovery is past it)."""
    annotations = body["metadata"].get("annotations") or {}
    primary = live.get(("StatefulSet", postgres.NAME))
    own = primary is not None and observe.owned_by(primary, body["metadata"]["uid"])
    started_at = int((((primary or {}).get("spec") or {}).get("ordinals") or {}).get("start")
                     or 0) if own else 0
    claims: list[dict[str, Any]] | None = None  # read once, when needed
    if recorded is None and t.postgres.enabled and (not own or started_at > 0):
        # A new tenant, or one made again over the claims of an earlier one (whose
        # StatefulSet may be left too, orphaned: its pod number is not this one's),
        # or one whose adoption's status write was lost (its own StatefulSet says).
        claims = kube.list_objects("v1", "PersistentVolumeClaim", namespace=t.namespace)
        found = recovery.adopted(claims, now, started_at=started_at)
        if isinstance(found, str):
            return Recovering(t, None, [], held=found)
        recorded = found
    if recorded is not None and recorded.kept_volumes:
        # A person deletes a kept volume when done with it; it is forgotten then.
        if claims is None:
            claims = kube.list_objects("v1", "PersistentVolumeClaim", namespace=t.namespace)
        recorded = recovery.forget_deleted(recorded, {c["metadata"]["name"] for c in claims})
        if (mark := recovery.unmarked_claim(recorded, claims)) is not None:
            _mark_serving(t, *mark)
    before = recorded
    if recovery.active(recorded):
        assert recorded is not None
        job = None
        if recorded.phase == RecoveryPhase.VERIFYING:
            name = builders.job_name(recorded)
            job = kube.get("batch/v1", "Job", name, t.namespace)
            if job is not None:
                live[("Job", name)] = job
        pods = {p["metadata"]["name"]: p for p in observe.tenant_pods(t)}
        recorded = recovery.advance(recorded, recovery.Facts(
            now, pods, live.get(("StatefulSet", postgres.NAME)), job,
            recovery.app_deployments(live)))
        if (mark := recovery.serving_claim(before, recorded)) is not None:
            _mark_serving(t, *mark)
    else:
        recorded = _answer(t, annotations, recorded, policies, now)
    policy = _policy_spec(policies, recorded.backup_policy) if recorded else None
    recorded = recovery.source_kept(recorded, policy, now)
    built = recovery.with_plan(t, recovery.plan(before, recorded), policy)
    children: list[Manifest] = []
    if recorded is not None and recorded.phase == RecoveryPhase.VERIFYING and policy is not None:
        queries = _queries(t.namespace, recorded.verify_drill)
        if queries is None:
            # The drill was deleted meanwhile: what it would check cannot be.
            recorded = recovery.roll_back(recorded, now, f"the verification failed: DRDrill "
                                                         f"{recorded.verify_drill} is gone")
            built = recovery.with_plan(t, recorded, policy)
        else:
            assert recorded.start_time is not None  # set by begin
            children = [builders.checks_config(built, recorded, queries),
                        builders.verification_job(built, recorded, policy.storage,
                                                  recorded.start_time)]
    return Recovering(built, recorded, children)


def _mark_serving(t: EffectiveTenant, claim: str, marks: Mapping[str, str]) -> None:
    """Marked before the status says the recovery ended: a tenant made again
    over the claims finds the database by it (recovery.adopted)."""
    try:
        kube.annotate("v1", "PersistentVolumeClaim", claim, t.namespace, marks)
    except ApiException as error:
        if error.status != 404:
            raise
        # Deleted by a person already: nothing to find it by any more.
        logger.info("tenant %s: claim %s is gone; not marked", t.name, claim)


def _answer(t: EffectiveTenant, annotations: Mapping[str, str],
            recorded: RecoveryStatus | None, policies: Sequence[Mapping[str, Any]],
            now: datetime) -> RecoveryStatus | None:
    """A new request started, refused, or nothing new."""
    target = (annotations.get(recovery.RECOVER_TO_ANNOTATION) or "").strip()
    if not target:
        return recovery.withdrawn(recorded)
    wanted = recovery.request(annotations, t.namespace, t.name, recorded, now)
    if wanted is None:
        return recorded
    refused = functools.partial(recovery.refused, previous=recorded, now=now)
    if isinstance(wanted, str):
        return refused(target, wanted)
    if not t.postgres.enabled or t.suspend:
        return refused(target, "an in-place recovery needs a running PostgreSQL "
                               "(spec.components.postgres enabled, not suspended)")
    chosen = archiving_policy.chosen(policies)
    if chosen is None:
        return refused(target, "no BackupPolicy of this tenant archives its WAL "
                               "(spec.continuousArchiving): nothing restores to a moment")
    policy_name, spec = chosen
    if wanted.verify_drill is not None and _queries(t.namespace, wanted.verify_drill) is None:
        return refused(target, f"annotation {recovery.RECOVER_VERIFY_ANNOTATION}: "
                               f"DRDrill {t.namespace}/{wanted.verify_drill} does not exist")
    full = recovery.kept_volumes_full(recorded)
    if full is not None:
        return refused(target, full)
    short = recovery.storage_shortfall(
        kube.list_objects("v1", "ResourceQuota", namespace=t.namespace), t.postgres.storage,
        t.postgres.storage_class_name)
    if short is not None:
        return refused(target, short)
    observed = next((BackupPolicyStatus.model_validate(p.get("status") or {})
                     for p in policies if p["metadata"]["name"] == policy_name),
                    BackupPolicyStatus())
    source = drill_recovery.physical_source(
        wanted.point, policy_name, spec, observed,
        field=f"annotation {recovery.RECOVER_TO_ANNOTATION}", what="the recovery", now=now,
        waits_for_backups=False)
    if isinstance(source, drill_recovery.Refusal):
        return refused(target, source.message)
    logger.warning("tenant %s/%s: in-place recovery to %s confirmed; stopping its apps",
                   t.namespace, t.name, source.target)
    return recovery.begin(wanted, source, policy_name, recorded, now,
                          fingerprint=archiving_policy.fingerprint(spec))


def _policy_spec(policies: Sequence[Mapping[str, Any]], name: str | None) -> (
        BackupPolicySpec | None):
    for policy in policies:
        if policy["metadata"]["name"] == name:
            try:
                return BackupPolicySpec.model_validate(policy.get("spec") or {})
            except ValidationError:
                return None
    return None


def _queries(namespace: str, drill: str | None) -> list[QueryCheck] | None:
    """The named drill's queries (none without a drill), or None when it is missing."""
    if drill is None:
        return []
    body = kube.get(API, "DRDrill", drill, namespace)
    if body is None:
        return None
    try:
        return list(DRDrillSpec.model_validate(body.get("spec") or {}).checks.queries)
    except ValidationError:
        return None
