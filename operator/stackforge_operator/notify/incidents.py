"""Pure: which incidents a tenant has now, read from status alone (no I/O).

An incident has a key (its identity: event and subject), the moment its
condition began, and a summary for humans. The moment comes from timestamps
already in status (a condition's lastTransitionTime, a run's completion), so
detecting the same incident twice gives the same answer: status stays
unchanged and a converged resync costs no write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackforge_operator import config
from stackforge_operator.models import conditions as types
from stackforge_operator.models.backup import BackupPolicyStatus
from stackforge_operator.models.common import Condition, ConditionStatus
from stackforge_operator.models.drill import Verdict
from stackforge_operator.models.tenant import (
    CERTIFICATE_WARNING_DAYS,
    NotificationEvent,
    RecoveryPhase,
    StackForgeTenantStatus,
)
from stackforge_operator.pod_health import DISK_FULL
from stackforge_operator.status import find

Event = NotificationEvent
# The runbook's "service down for > 2 minutes" (STACKFORGE_DEGRADED_NOTIFY_SECONDS).
DEGRADED_AFTER = timedelta(seconds=config.DEGRADED_NOTIFY_SECONDS)
# Failing informational conditions have incidents of their own; alone, they
# do not make the tenant "down" (its components serve).
_INFORMATIONAL = frozenset({types.BACKUP_HEALTHY, types.DRILL_PASSING, types.CERTIFICATES_VALID})


@dataclass(frozen=True)
class Incident:
    key: str
    event: NotificationEvent
    since: datetime
    summary: str
    # Its condition is Unknown now (the bucket unreadable for a moment): an
    # incident already announced stays open, none opens (changes.diff).
    undecided: bool = False


def down_since(conditions: Sequence[Condition]) -> datetime | None:
    """Since when the tenant has been down (not Ready for a reason of its own), or None.

    Not Ready only because a backup, drill or certificate is failing is not
    downtime: those are notified as what they are. A component not ready, or a
    problem only a human can fix (a missing Secret, an invalid spec), is.
    """
    ready = find(conditions, types.READY)
    if ready is None or ready.status == ConditionStatus.TRUE:
        return None
    components = [c for c in conditions if c.type in types.TENANT_COMPONENT_CONDITIONS
                  and c.status != ConditionStatus.TRUE]
    informational = [c for c in conditions
                     if c.type in _INFORMATIONAL and c.status == ConditionStatus.FALSE]
    if informational and not components:
        return None
    since = ready.last_transition_time
    if components:
        # Ready may have gone False earlier for an informational reason: the
        # outage began when the first component failed, not before.
        since = max(since, min(c.last_transition_time for c in components))
    return since


def tenant_not_ready(
    conditions: Sequence[Condition], now: datetime, after: timedelta
) -> Incident | None:
    since = down_since(conditions)
    if since is None or now - since < after:
        return None
    ready = find(conditions, types.READY)
    reason = f"{ready.reason}: {ready.message}" if ready is not None else ""
    minutes = int((now - since).total_seconds() // 60)
    return Incident(Event.TENANT_NOT_READY.value, Event.TENANT_NOT_READY, since,
                    f"not Ready for {minutes} min ({reason})".rstrip())


def component_incidents(
    conditions: Sequence[Condition], now: datetime, after: timedelta
) -> list[Incident]:
    """ComponentDegraded per component condition False for longer than ``after``.

    The operators' alert (runbook: "service down for > 2 minutes"); the
    customers' one is TenantNotReady, after 15. Unknown (still being created)
    is not degraded.
    """
    found = []
    for condition in conditions:
        if (condition.type in types.TENANT_COMPONENT_CONDITIONS
                and condition.status == ConditionStatus.FALSE
                and now - condition.last_transition_time >= after):
            component = condition.type.removesuffix("Ready")
            found.append(Incident(
                f"{Event.COMPONENT_DEGRADED.value}/{component}", Event.COMPONENT_DEGRADED,
                condition.last_transition_time,
                f"{component} degraded: {condition.reason}: {condition.message}"))
    return found


def volume_full_incidents(conditions: Sequence[Condition]) -> list[Incident]:
    """VolumeFull per component whose server stopped on a full volume (its condition's
    reason DiskFull), without waiting: it cannot heal by itself."""
    found = []
    for condition in conditions:
        if (condition.type in types.TENANT_COMPONENT_CONDITIONS
                and condition.status == ConditionStatus.FALSE and condition.reason == DISK_FULL):
            component = condition.type.removesuffix("Ready")
            found.append(Incident(f"{Event.VOLUME_FULL.value}/{component}", Event.VOLUME_FULL,
                                  condition.last_transition_time,
                                  f"{component} volume full: {condition.message}"))
    return found


def isolated_incident(conditions: Sequence[Condition]) -> Incident | None:
    """The tenant is cut off (spec.isolate, a security incident) for as long as it lasts."""
    isolated = find(conditions, types.ISOLATED)
    if isolated is None or isolated.status != ConditionStatus.TRUE:
        return None
    return Incident(Event.TENANT_ISOLATED.value, Event.TENANT_ISOLATED,
                    isolated.last_transition_time,
                    f"isolated: all traffic except the operator's is blocked ({isolated.message})")


def backup_incidents(name: str, policy: BackupPolicyStatus) -> list[Incident]:
    """BackupFailed (of the dumps, of the physical backups), BackupStale and
    ArchivingFailed of one BackupPolicy, from its own conditions: False opens
    one, True resolves it, Unknown (the bucket unreadable, a first backup
    running) decides neither: "resolved" while the backups are as stale as
    before was untrue, and another "opened" followed once the bucket answered."""
    found = []
    # (condition, event, key's end, summary's start); the physical backups'
    # BackupFailed opens and resolves apart from the dumps'.
    for type_, event, subject, heading in (
            (types.LAST_BACKUP_SUCCEEDED, Event.BACKUP_FAILED, "", f"backup policy {name} failed"),
            (types.BACKUP_FRESH, Event.BACKUP_STALE, "", f"backup policy {name} is stale"),
            (types.CONTINUOUS_ARCHIVING, Event.ARCHIVING_FAILED, "",
             f"backup policy {name} cannot archive WAL"),
            (types.PHYSICAL_BACKUPS, Event.BACKUP_FAILED, "/physical",
             f"backup policy {name}: a physical backup failed")):
        condition = find(policy.conditions, type_)
        if condition is None or condition.status == ConditionStatus.TRUE:
            continue
        found.append(Incident(f"{event.value}/{name}{subject}", event,
                              condition.last_transition_time, f"{heading}: {condition.message}",
                              undecided=condition.status != ConditionStatus.FALSE))
    return found


def drill_incident(status: StackForgeTenantStatus, now: datetime) -> Incident | None:
    """The tenant's newest DR drill verdict, when it is Failed."""
    drill = status.last_drill
    if drill is None or drill.verdict != Verdict.FAILED:
        return None
    passing = find(status.conditions, types.DRILL_PASSING)
    message = passing.message if passing is not None else f"run {drill.run_id} failed"
    return Incident(f"{Event.DRILL_FAILED.value}/{drill.drill}", Event.DRILL_FAILED,
                    drill.completion_time or now, f"DR drill {message}")


def certificate_incident(status: StackForgeTenantStatus, days: int) -> Incident | None:
    cert = status.certificate
    if cert is None or cert.days_remaining is None or cert.not_after is None:
        return None
    if cert.days_remaining >= days:
        return None
    # Since it entered the warning window: stable from one reconcile to the next.
    since = cert.not_after - timedelta(days=days)
    left = "expired" if cert.days_remaining <= 0 else f"expires in {cert.days_remaining} days"
    return Incident(f"{Event.CERTIFICATE_EXPIRING.value}/{cert.secret_name}",
                    Event.CERTIFICATE_EXPIRING, since,
                    f"TLS certificate in {cert.secret_name} {left} "
                    f"({cert.not_after:%Y-%m-%d %H:%M} UTC)")


def recovery_incidents(status: StackForgeTenantStatus) -> list[Incident]:
    """TenantRecovering while an in-place recovery runs (its apps are stopped), and
    RecoveryFailed once one failed, until the next one starts (a request refused
    meanwhile starts nothing: its record keeps the failure in ``lastEnded``)."""
    recovery = status.recovery
    if recovery is not None and recovery.phase == RecoveryPhase.REFUSED:
        ended = recovery.last_ended
        if ended is None or ended.phase != RecoveryPhase.FAILED or ended.start_time is None:
            return []
        return [_recovery_failed(ended.request, ended.recovery_target, ended.message,
                                 ended.completion_time or ended.start_time)]
    if recovery is None or recovery.start_time is None:
        return []
    if recovery.phase == RecoveryPhase.SUCCEEDED:
        return []
    if recovery.phase == RecoveryPhase.FAILED:
        return [_recovery_failed(recovery.request, recovery.recovery_target, recovery.message,
                                 recovery.completion_time or recovery.start_time)]
    target = recovery.recovery_target or recovery.request
    return [Incident(f"{Event.TENANT_RECOVERING.value}/{recovery.request}",
                     Event.TENANT_RECOVERING, recovery.start_time,
                     f"recovering the database in place to {target}: the apps are stopped "
                     f"until it is done ({recovery.phase.value})")]


def _recovery_failed(request: str, target: str | None, message: str | None,
                     since: datetime) -> Incident:
    return Incident(f"{Event.RECOVERY_FAILED.value}/{request}", Event.RECOVERY_FAILED, since,
                    f"the in-place recovery to {target or request} failed: {message}")


def detect(
    status: StackForgeTenantStatus,
    policies: Sequence[tuple[str, BackupPolicyStatus]],
    now: datetime,
    *,
    not_ready_after: timedelta,
    degraded_after: timedelta = DEGRADED_AFTER,
    certificate_days: int = CERTIFICATE_WARNING_DAYS,
) -> list[Incident]:
    """Every incident the tenant has now (unfiltered), sorted by key."""
    found: list[Incident | None] = [
        tenant_not_ready(status.conditions, now, not_ready_after),
        isolated_incident(status.conditions),
        drill_incident(status, now),
        certificate_incident(status, certificate_days),
        *component_incidents(status.conditions, now, degraded_after),
        *volume_full_incidents(status.conditions),
        *recovery_incidents(status),
    ]
    for name, policy in policies:
        found += backup_incidents(name, policy)
    return sorted((i for i in found if i is not None), key=lambda i: i.key)
