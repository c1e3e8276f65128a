"""What every reconciler does the same way: judge and announce a status change, read a
runner's result. (Each reconciler writes its own kind's status, so RBAC scans see it.)"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from pydantic import ValidationError

from stackforge_operator import API_GROUP, API_VERSION, kube, status
from stackforge_operator.models.common import Condition
from stackforge_operator.models.effective import EffectiveTenant, resolve
from stackforge_operator.models.tenant import RecoveryStatus, StackForgeTenantSpec
from stackforge_operator.pod_health import job_messages, result_of
from stackforge_operator.reconcile import recovery
from stackforge_operator.reconcile.tenant_observe import live_placement_problem, validation_summary

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"


class StatusWithConditions(Protocol):
    conditions: list[Condition]

    def model_dump(self, *, mode: str, by_alias: bool, exclude_none: bool = ...) -> dict[str, Any]:
        ...


def _dump(model: StatusWithConditions) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def status_changed(
    body: Mapping[str, Any], old: StatusWithConditions, new: StatusWithConditions
) -> bool:
    """Whether writing ``new`` changes anything: a converged object costs no write."""
    return not body.get("status") or _dump(new) != _dump(old)


def status_patch(new: StatusWithConditions) -> dict[str, Any]:
    # Nulls in a merge patch delete fields that are gone.
    return new.model_dump(mode="json", by_alias=True, exclude_none=False)


def post_transitions(
    body: Mapping[str, Any], old: StatusWithConditions, new: StatusWithConditions
) -> None:
    """An Event for every condition that flipped."""
    for event_type, reason, message in status.transitions(old.conditions, new.conditions):
        kube.record_event(dict(body), event_type, reason, message)


def termination_messages(namespace: str, job: str) -> list[str]:
    """The termination messages of a Job's pods' containers, those that have one."""
    return job_messages(kube.list_objects("v1", "Pod", namespace=namespace,
                                          label_selector=f"job-name={job}"), job)


def termination_result(
    namespace: str, job: str, parse: Callable[[str], dict[str, Any] | None], *,
    log_tail_as_message: bool = False,
) -> dict[str, Any]:
    """A runner's result, from its Job's pods' termination messages ({} if none; see
    pod_health.result_of)."""
    return result_of(termination_messages(namespace, job), parse,
                     log_tail_as_message=log_tail_as_message)


# A BackupPolicy's or DRDrill's tenant may not run where it is (referenced_tenant).
TENANT_NOT_FOUND = "TenantNotFound"
TENANT_NOT_PLACED = "TenantNotPlaced"


def referenced_tenant(
    name: str, namespace: str,
) -> tuple[EffectiveTenant, StackForgeTenantSpec] | status.Problem:
    """The tenant a BackupPolicy or DRDrill names in ``spec.tenantRef``, or why not.

    Like an HPA's target, the tenant is looked up in the referrer's own
    namespace: backups and drills live beside the tenant they serve.

    A tenant that may not run where it is (its name held by a tenant elsewhere,
    its namespace another's) is no tenant to back up or drill: backups are
    keyed by the tenant's name alone, so a policy beside a namesake that lost
    the name listed, reported and pruned the other tenant's backups.
    """
    body = kube.get(API, "StackForgeTenant", name, namespace)
    if body is None:
        return status.Problem(
            TENANT_NOT_FOUND,
            f"spec.tenantRef.name: StackForgeTenant {name} does not exist in namespace "
            f"{namespace}")
    placement = live_placement_problem(body["metadata"])
    if placement is not None:
        return status.Problem(
            TENANT_NOT_PLACED,
            f"spec.tenantRef.name: StackForgeTenant {name} may not run in namespace "
            f"{namespace} ({placement.reason}: {placement.message}); nothing is done for it "
            "until it may")
    return as_referenced(body)


def as_referenced(
    body: Mapping[str, Any],
) -> tuple[EffectiveTenant, StackForgeTenantSpec] | status.Problem:
    """The tenant ``body`` as its backups and drills see it: where its database is
    now, and whether writes to it are stopped."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        spec = StackForgeTenantSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return status.Problem("TenantInvalid", validation_summary(error))
    t = resolve(name, spec, namespace=namespace)
    # Where its database is now (an in-place recovery moves it to another pod).
    found = (body.get("status") or {}).get("recovery")
    if found:
        try:
            t = recovery.with_plan(t, RecoveryStatus.model_validate(found), None)
        except ValidationError:
            logger.warning("StackForgeTenant %s/%s: status.recovery unreadable; taking its "
                           "database to be pod 0's", namespace, name)
    if spec.bootstrap is not None and not ((body.get("status") or {}).get("bootstrap") or {}
                                           ).get("completionTime"):
        # Its database is still being made from another's backup: a backup of it
        # now would be of a database half restored (or empty), and the newest.
        t = replace(t, writes_stopped=True)
    return t, spec
