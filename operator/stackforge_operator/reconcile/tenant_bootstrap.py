"""One reconcile's step of a dump restored into a new tenant (spec.bootstrap.logical).

The tenant is built as any new one (an empty database), with its apps and
read replicas held at zero; once the primary is Ready the runner's Job
restores the dump into it (builders/bootstrap.py), through a NetworkPolicy of
its own to the source's bucket. When the Job has passed, the record is done:
the Job, its egress and the copies of the source's Secrets are pruned, and
the apps start. A failed Job stays, with its reason in the record, until a
person deletes it (the restore was one transaction: trying again is safe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stackforge_operator import kube, status
from stackforge_operator.builders import backup_network, postgres
from stackforge_operator.builders import bootstrap as builders
from stackforge_operator.builders.common import Manifest
from stackforge_operator.drill import outcome
from stackforge_operator.models.effective import EffectiveTenant
from stackforge_operator.models.tenant import BootstrapStatus
from stackforge_operator.pod_health import job_ended, status_observed
from stackforge_operator.reconcile import bootstrap, storage
from stackforge_operator.reconcile.common import termination_result


@dataclass(frozen=True)
class DumpStep:
    """The record after this look, and what the tenant applies for it meanwhile."""

    recorded: BootstrapStatus
    children: list[Manifest] = field(default_factory=list)
    problems: list[status.Problem] = field(default_factory=list)

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
            result = termination_result(t.namespace, builders.DUMP_JOB, outcome.parse_result,
                                        log_tail_as_message=True)
    recorded = bootstrap.dump_progress(prepared.recorded, job, result, now)
    if recorded.completion_time is not None:
        return DumpStep(recorded)
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
