"""Pure status logic: conditions shaped like metav1.Condition, and the roll-up.

Conventions (DESIGN.md section 2): ``Ready`` exists from the first reconcile;
whenever it is False exactly one of ``Reconciling`` (still converging) or
``Stalled`` (needs a human) is True; ``lastTransitionTime`` moves only when a
condition's status flips; every condition carries the generation it saw.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from stackforge_operator.models.common import Condition, ConditionStatus
from stackforge_operator.models.conditions import ISOLATED, TENANT_COMPONENT_CONDITIONS
from stackforge_operator.pod_health import PodFault, status_observed, workload_fault

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


class Progress(enum.Enum):
    """Where the object stands overall."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


@dataclass(frozen=True)
class Observation:
    """One condition as a reconcile observed it (no timestamps yet)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def _flag(value: bool) -> ConditionStatus:
    return ConditionStatus.TRUE if value else ConditionStatus.FALSE


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == ConditionStatus.TRUE


def merge(
    existing: Sequence[Condition],
    observations: Iterable[Observation],
    *,
    generation: int,
    now: datetime,
    drop: Iterable[str] = (),
) -> list[Condition]:
    """The full new conditions list (a merge patch replaces lists whole).

    Observed types replace their old entries, keeping ``lastTransitionTime``
    when the status did not flip; types in ``drop`` (a component switched
    off) disappear; other types not observed this time are kept.
    """
    dropped = set(drop)
    by_type = {c.type: c for c in existing if c.type not in dropped}
    for seen in observations:
        old = by_type.get(seen.type)
        flipped = old is None or old.status != seen.status
        by_type[seen.type] = Condition(
            type=seen.type,
            status=seen.status,
            reason=seen.reason,
            message=seen.message,
            last_transition_time=now if flipped or old is None else old.last_transition_time,
            observed_generation=generation,
        )
    return sorted(by_type.values(), key=_order)


def rollup(progress: Progress, reason: str, message: str) -> list[Observation]:
    """Ready, Reconciling and Stalled for one overall state, mutually consistent."""
    return [
        Observation(READY, _flag(progress is Progress.READY), reason, message),
        Observation(
            RECONCILING,
            _flag(progress is Progress.RECONCILING),
            reason if progress is Progress.RECONCILING else "Converged",
            message if progress is Progress.RECONCILING else "",
        ),
        Observation(
            STALLED,
            _flag(progress is Progress.STALLED),
            reason if progress is Progress.STALLED else "NotStalled",
            message if progress is Progress.STALLED else "",
        ),
    ]


def isolation(isolated: bool, lifting_until: datetime | None = None) -> Observation:
    """Isolated: True while spec.isolate cuts the tenant off (not part of Ready: an
    isolated tenant is deliberately unreachable, its components may well be fine),
    and while its lift settles (``lifting_until``, reconcile/isolation.py): until
    then the primary may still close a session that began after the lift."""
    if isolated:
        return Observation(ISOLATED, ConditionStatus.TRUE, "IsolationRequested",
                           "spec.isolate is set: only the operator's traffic is allowed")
    if lifting_until is not None:
        return Observation(ISOLATED, ConditionStatus.TRUE, "IsolationLifting",
                           "spec.isolate is off and the network policies allow the stack's "
                           "flows again; the primary may close network sessions begun before "
                           f"{lifting_until.isoformat()}, when the isolation ends")
    return Observation(ISOLATED, ConditionStatus.FALSE, "NotIsolated",
                       "network policies allow the stack's own flows")


def with_transition(conditions: Sequence[Condition], type_: str,
                    when: datetime) -> list[Condition]:
    """``conditions`` with the True condition ``type_`` begun ``when`` (a moment
    the reconcile took before writing, not the moment of the write)."""
    return [c.model_copy(update={"last_transition_time": when})
            if c.type == type_ and c.status == ConditionStatus.TRUE else c
            for c in conditions]


def same_conditions(a: Sequence[Condition], b: Sequence[Condition]) -> bool:
    """True when writing ``b`` over ``a`` would change nothing a reader cares about."""
    return [c.model_dump(mode="json") for c in sorted(a, key=_order)] == [
        c.model_dump(mode="json") for c in sorted(b, key=_order)
    ]


def _order(condition: Condition) -> tuple[int, str]:
    # Ready first, then the kstatus pair, then the rest alphabetically: a
    # stable order keeps status patches free of spurious list changes.
    rank = {READY: 0, RECONCILING: 1, STALLED: 2}
    return (rank.get(condition.type, 3), condition.type)


# -- tenants: workloads -> component readiness -> conditions ----------------------

# Component label value -> (kind shown in status, condition type it feeds).
COMPONENT_CONDITIONS: dict[str, tuple[str, str]] = {
    "postgres": ("Postgres", "PostgresReady"),
    "postgres-replica": ("Postgres", "PostgresReady"),
    "pooler": ("Pooler", "PoolerReady"),
    "redis": ("Redis", "RedisReady"),
    "kafka": ("Kafka", "KafkaReady"),
    "kong": ("Kong", "KongReady"),
    "consul": ("Consul", "ConsulReady"),
    "app": ("App", "AppsReady"),
}
ALL_COMPONENT_CONDITIONS = frozenset(c for _, c in COMPONENT_CONDITIONS.values())
# Components that serve while a majority of their servers is ready (Raft).
QUORUM_COMPONENTS = frozenset({"consul"})
INFORMATIONAL_CONDITIONS = ("BackupHealthy", "DrillPassing", "CertificatesValid")


@dataclass(frozen=True)
class WorkloadState:
    """What a Deployment's or StatefulSet's status says about its readiness."""

    name: str
    component: str
    replicas: int
    ready_replicas: int
    ready: bool
    message: str
    # Why its pods do not run, in their own words (image pull, crash loop, OOM, ...).
    fault: PodFault | None = None


def with_pod_fault(state: WorkloadState, live: Mapping[str, Any] | None,
                   pods: Sequence[Mapping[str, Any]]) -> WorkloadState:
    """A workload that is not ready, with why its pods do not run (when they say)."""
    if state.ready or live is None:
        return state
    fault = workload_fault(live, pods)
    if fault is None:
        return state
    return replace(state, fault=fault, message=f"{state.message}; {fault.describe()}")


def workload_state(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> WorkloadState:
    """Readiness of one workload the tenant wants, from its live object (None: missing)."""
    meta = desired["metadata"]
    component = meta["labels"].get("app.kubernetes.io/component", meta["name"])
    if live is None:
        return WorkloadState(meta["name"], component, 0, 0, False, "not created yet")
    spec, status = live.get("spec") or {}, live.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    if not status_observed(live):
        return WorkloadState(meta["name"], component, wanted, ready, False, "rollout not observed")
    if wanted == 0:
        done = current == 0
        return WorkloadState(meta["name"], component, 0, ready, done,
                             "" if done else f"{current} replicas still stopping")
    if component in QUORUM_COMPONENTS:
        # Ready servers are those that know a leader (builders/consul.py): the
        # service is up while a majority is, one server down is degraded, not down.
        quorum = wanted // 2 + 1
        done = ready >= quorum and updated >= wanted
        if done and ready < wanted:
            return WorkloadState(meta["name"], component, wanted, ready, True,
                                 f"{ready}/{wanted} servers ready: quorum holds, degraded")
        message = "" if done else (
            f"{ready}/{wanted} servers ready (quorum needs {quorum}), {updated} updated")
        return WorkloadState(meta["name"], component, wanted, ready, done, message)
    # readyReplicas counts every pod, of the old template too; updatedReplicas
    # counts the new template's, ready or not. During a Deployment's rollout
    # (maxSurge 1, maxUnavailable 0) the old pod is Ready and the new one
    # exists: ready 1, updated 1. So the rollout is done only once no pod of an
    # older template is left (replicas = updated), as `kubectl rollout status`
    # judges it; otherwise a new template that never starts would read Ready.
    old = current - updated
    done = ready >= wanted and updated >= wanted and old <= 0
    message = "" if done else (f"{ready}/{wanted} replicas ready, {updated} updated"
                               + (f", {old} of an older template left" if old > 0 else ""))
    return WorkloadState(meta["name"], component, wanted, ready, done, message)


def component_observations(states: Sequence[WorkloadState]) -> list[Observation]:
    """One condition per component kind in use (e.g. all apps roll into AppsReady)."""
    grouped: dict[str, list[WorkloadState]] = {}
    for state in states:
        _, condition = COMPONENT_CONDITIONS.get(state.component, ("App", "AppsReady"))
        grouped.setdefault(condition, []).append(state)
    observations = []
    for condition, members in sorted(grouped.items()):
        waiting = [s for s in members if not s.ready]
        if waiting:
            message = "; ".join(f"{s.name}: {s.message}" for s in waiting)
            # The pods' own reason (ImagePullBackOff, OOMKilled, ...) when one says why.
            reason = next((s.fault.reason for s in waiting if s.fault), "NotReady")
            observations.append(Observation(condition, ConditionStatus.FALSE, reason, message))
        else:
            names = ", ".join(s.name for s in members)
            notes = "".join(f"; {s.name}: {s.message}" for s in members if s.message)
            observations.append(Observation(condition, ConditionStatus.TRUE, "Ready",
                                            f"ready: {names}{notes}"))
    return observations


@dataclass(frozen=True)
class Problem:
    """Something a human has to fix; it makes the object Stalled."""

    reason: str
    message: str


def stuck_workloads(states: Sequence[WorkloadState]) -> list[Problem]:
    """Workloads whose pods wait for a change only a person makes (a bad image, a
    missing Secret, a crash loop, too little memory): Stalled, not Reconciling forever."""
    return [Problem(s.fault.reason, f"{s.name}: {s.fault.describe()}")
            for s in states if s.fault is not None and not s.fault.heals_by_itself]


def tenant_progress(
    components: Sequence[Observation],
    informational: Sequence[Observation],
    problems: Sequence[Problem],
    *,
    suspended: bool,
) -> tuple[Progress, str, str]:
    """The roll-up: (progress, reason, message) for Ready/Reconciling/Stalled."""
    if problems:
        return (Progress.STALLED, problems[0].reason, "; ".join(p.message for p in problems))
    failing = [o for o in informational if o.status == ConditionStatus.FALSE]
    if failing:
        return (Progress.STALLED, failing[0].reason, "; ".join(
            f"{o.type}: {o.message}" for o in failing))
    waiting = [o for o in components if o.status != ConditionStatus.TRUE]
    if waiting:
        return (Progress.RECONCILING, "ComponentsNotReady", "; ".join(
            f"{o.type}: {o.message}" for o in waiting))
    if suspended:
        return (Progress.READY, "Suspended", "workloads are scaled to zero; data is kept")
    return (Progress.READY, "AllComponentsReady", f"{len(components)} components ready")


# Conditions whose False is bad news (a Warning event); for the others
# (Reconciling, Stalled, Isolated) True is.
_BAD_WHEN_TRUE = frozenset({RECONCILING, STALLED, ISOLATED})
# Not ready yet is routine for these while the object converges (Reconciling True).
_CONVERGING = frozenset({READY, *TENANT_COMPONENT_CONDITIONS})


def _good(condition: Condition) -> bool:
    return (condition.status == ConditionStatus.TRUE) != (condition.type in _BAD_WHEN_TRUE)


def transitions(
    old: Sequence[Condition], new: Sequence[Condition]
) -> list[tuple[str, str, str]]:
    """(event type, reason, message) for every meaningful transition: one Event a
    reader of ``kubectl describe`` needs, not one per condition (a new tenant had
    eleven). Left out, as routine: Reconciling itself (Ready says how it ended);
    a condition appearing in a good or Unknown state; Ready or a component not
    ready yet, and a component coming up, while the object converges. So a new
    tenant that provisions cleanly posts one Event, Ready=True; a component
    going down afterwards posts its own and Ready's."""
    before = {c.type: c.status for c in old}
    # Before or now: the reconcile that ends the converging brings the last components up.
    converging = any(c.type == RECONCILING and c.status == ConditionStatus.TRUE
                     for c in (*old, *new))
    events = []
    for condition in new:
        previous = before.get(condition.type)
        if previous == condition.status or condition.type == RECONCILING:
            continue
        good = _good(condition)
        if previous is None and (good or condition.status == ConditionStatus.UNKNOWN):
            continue
        if converging and condition.type in _CONVERGING and (
                previous is None or (good and condition.type != READY)):
            continue
        message = f"{condition.type}={condition.status.value}: {condition.message}".rstrip(": ")
        events.append(("Normal" if good else "Warning", condition.reason, message))
    return events
