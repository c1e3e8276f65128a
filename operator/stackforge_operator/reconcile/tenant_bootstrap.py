"""One reconcile's step of a dump restored into a new tenant (spec.bootstrap.logical).

The tenant is built as any new one (an empty database), with its apps and
read replicas held at zero; once the primary is Ready the runner's Job
restores the dump into it (builders/bootstrap.py), through a NetworkPolicy of
its own to the source's bucket. When the Job has passed, the record is done:
its egress and the copies of the source's Secrets are pruned, and the apps
start; the Job itself goes one pass later, once that record is written (it is
the only evidence that the restore ran). A failed Job stays, with its reason in the record, until a
person deletes it (the restore was one transaction: trying again is safe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stackforge_operator import kube, status, watch_cache
from stackforge_operator.builders import backup_network, postgres
from stackforge_operator.builders import bootstrap as builders
from stackforge_operator.builders.common import Manifest
from stackforge_operator.drill import outcome
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import BootstrapMethod, BootstrapStatus
from stackforge_operator.pod_health import job_ended, status_observed
from stackforge_operator.reconcile import bootstrap, storage
from stackforge_operator.reconcile.common import termination_messages


@dataclass(frozen=True)
class DumpStep:
    """The record after this look, and what the tenant applies for it meanwhile."""

    recorded: BootstrapStatus
    children: list[Manifest] = field(default_factory=list)
    problems: list[status.Problem] = field(default_factory=list)
    # Children not desired any more yet not pruned in this pass.
    kept: tuple[tuple[str, str], ...] = ()

    @property
    def pending(self) -> bool:
        return self.recorded.completion_time is None


def primary_ready(statefulset: Mapping[str, Any] | None) -> bool:
    """The primary's StatefulSet has a Ready pod of the template it wants now."""
    state = (statefulset or {}).get("status") or {}
    return (status_observed(statefulset)
            and int(state.get("readyReplicas") or 0) >= 1
            and int(state.get("updatedReplicas") or 0) >= 1)


def run(t: EffectiveTenant, prepared: bootstrap.Prepared,
        live: dict[tuple[str, str], dict[str, Any]], now: datetime) -> DumpStep:
    """Look at the runner's Job; ``live`` gains it, so that it is pruned once done."""
    dump = prepared.dump
    assert dump is not None
    job = kube.get("batch/v1", "Job", builders.DUMP_JOB, t.namespace)
    result: dict[str, Any] = {}
    if job is not None:
        live[("Job", builders.DUMP_JOB)] = job
        if job_ended(job):
            # Its log's end by FallbackToLogsOnError, when it printed no result.
            result = bootstrap.dump_result(
                termination_messages(t.namespace, builders.DUMP_JOB), outcome.parse_result)
    recorded = bootstrap.dump_progress(prepared.recorded, job, result, now)
    if recorded.completion_time is not None:
        # Pruned now, a crash before the status write would leave nothing saying the
        # restore ran, and the next pass would start another over the restored
        # database: the Job goes once the record is written (finished_job).
        return DumpStep(recorded, kept=(("Job", builders.DUMP_JOB),) if job else ())
    children: list[Manifest] = []
    problems: list[status.Problem] = []
    try:
        children.append(backup_network.dump_restore_egress(
            t, dump.storage, storage.endpoint_addresses(dump.storage.endpoint)))
    except ValueError as error:
        problems.append(status.Problem("RestoreUnreachable", str(error)))
    if job is not None or primary_ready(live.get(("StatefulSet", postgres.NAME))):
        children.append(builders.dump_restore_job(t, dump))
    return DumpStep(recorded, children, problems)


def finished_job(t: EffectiveTenant, recorded: BootstrapStatus | None,
                 live: dict[tuple[str, str], dict[str, Any]]) -> None:
    """A dump's restore recorded done: its Job, if still there, joins ``live`` so
    that it is pruned. Asked of the Jobs' metadata watch first: free once gone."""
    if recorded is None or recorded.completion_time is None \
            or recorded.method is not BootstrapMethod.LOGICAL \
            or recorded.kept_volume is not None:
        return
    if watch_cache.CACHES.holds("batch/v1", "Job", builders.DUMP_JOB, t.namespace) is False:
        return
    job = kube.get("batch/v1", "Job", builders.DUMP_JOB, t.namespace)
    if job is not None:
        live[("Job", builders.DUMP_JOB)] = job
