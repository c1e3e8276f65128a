"""The backups a running restore reads, kept from what deletes backups.

A drill's run, a tenant made from another's backups (``spec.bootstrap``) and an
in-place recovery read a policy's backups for minutes, or hours for a large
database. Two things delete backups meanwhile: the policy's retention of
logical dumps, which the operator applies after each new dump
(reconcile/backup.retain), and pgBackRest's expiry, which the primary's
archiver runs after each physical backup it is asked for. Either makes the
restore fail midway. So:

- retention keeps every dump a running restore may be reading (``held_dumps``);
- a physical backup whose expiry would remove the full backup a running
  restore starts from is not asked for until that restore has read it
  (``endangered``, reconcile/backup._physical);
- the other way round, a physical restore does not start while a backup
  whose expiry removes its full backup is under way
  (drill_recovery.physical_source).

A restore holds a physical backup for at most the policy's run deadline from
its start: one that never ends must not stop the tenant's physical backups for
ever. Dumps are held longer (reconcile/backup._dumps_read): a held dump costs
only its storage.

The restores are read from the watch caches' bodies, not validated models:
this runs in every policy's pass, over every drill and tenant of the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stackforge_operator.backup.manifest import Manifest
from stackforge_operator.builders.archiving import BackupRequest
from stackforge_operator.drill.selection import (
    BackupChoice,
    SelectionKind,
    has_dump,
    recovery_point,
)
from stackforge_operator.models.backup import PhysicalBackup
from stackforge_operator.models.drill import DrillStep
from stackforge_operator.models.tenant import BootstrapMethod, RecoveryPhase
from stackforge_operator.reconcile.physical_backups import expired_by

# A run reads its backup until it verifies the restored database.
_READING_STEPS = {DrillStep.SELECTING_BACKUP.value, DrillStep.CREATING_SANDBOX.value,
                  DrillStep.RESTORING.value}
# An in-place recovery reads the repository until the restored server is up.
_READING_PHASES = {RecoveryPhase.STOPPING_WRITES.value, RecoveryPhase.RESTORING.value}
LATEST = "latest"


@dataclass(frozen=True)
class Restore:
    """A restore under way: who runs it, since when, and what it reads."""

    holder: str  # e.g. "DRDrill shop/nightly", for messages
    started: datetime
    choice: str | None = None  # a dump: latest, a run id, or before=<time>
    target: datetime | None = None  # a pgBackRest restore's moment (None: the latest)


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text or text == LATEST:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def logical_restores(tenant: str, namespace: str, policy: str,
                     drills: Iterable[Mapping[str, Any]],
                     tenants: Iterable[Mapping[str, Any]]) -> list[Restore]:
    """The restores reading the dumps of ``tenant`` that ``policy`` (in ``namespace``) made:
    Logical drills' runs and tenants bootstrapping from one of these dumps."""
    found = []
    for drill in drills:
        meta, spec = drill.get("metadata") or {}, drill.get("spec") or {}
        run = (drill.get("status") or {}).get("activeRun") or {}
        policy_ref = (spec.get("backupPolicyRef") or {}).get("name")
        started = _time(run.get("startTime"))
        if (meta.get("namespace") != namespace
                or (spec.get("tenantRef") or {}).get("name") != tenant
                or policy_ref not in (None, policy) or started is None
                or run.get("repositoryPath") or run.get("step") not in _READING_STEPS):
            continue
        found.append(Restore(f"DRDrill {namespace}/{meta.get('name')}", started,
                             choice=str(run.get("backupId") or LATEST)))
    for other in tenants:
        bootstrap = (other.get("status") or {}).get("bootstrap") or {}
        started = _time(bootstrap.get("startTime"))
        if (bootstrap.get("method") != BootstrapMethod.LOGICAL.value
                or bootstrap.get("completionTime") or started is None
                or (bootstrap.get("sourceTenant"), bootstrap.get("sourceNamespace"),
                    bootstrap.get("backupPolicy")) != (tenant, namespace, policy)):
            continue
        meta = other.get("metadata") or {}
        holder = f"StackForgeTenant {meta.get('namespace')}/{meta.get('name')} (spec.bootstrap)"
        # The dump asked for; and the one an attempt chose, which a failed attempt
        # records too (the next one chooses again, by what was asked).
        found.append(Restore(holder, started, choice=str(bootstrap.get("backup") or LATEST)))
        if bootstrap.get("backupId"):
            found.append(Restore(holder, started, choice=str(bootstrap["backupId"])))
    return found


def physical_restores(repository_path: str, drills: Iterable[Mapping[str, Any]],
                      tenants: Iterable[Mapping[str, Any]]) -> list[Restore]:
    """The restores reading the pgBackRest repository at ``repository_path`` (an
    incarnation's own): Physical drills' runs, tenants bootstrapping from it, and
    a tenant's in-place recovery."""
    found = []
    for drill in drills:
        run = (drill.get("status") or {}).get("activeRun") or {}
        started = _time(run.get("startTime"))
        if (run.get("repositoryPath") != repository_path or started is None
                or run.get("step") not in _READING_STEPS):
            continue
        meta = drill.get("metadata") or {}
        found.append(Restore(f"DRDrill {meta.get('namespace')}/{meta.get('name')}", started,
                             target=_time(run.get("recoveryTarget"))))
    for other in tenants:
        meta, observed = other.get("metadata") or {}, other.get("status") or {}
        name = f"StackForgeTenant {meta.get('namespace')}/{meta.get('name')}"
        bootstrap = observed.get("bootstrap") or {}
        started = _time(bootstrap.get("startTime"))
        if (bootstrap.get("repositoryPath") == repository_path and started is not None
                and not bootstrap.get("completionTime")):
            found.append(Restore(f"{name} (spec.bootstrap)", started,
                                 target=_time(bootstrap.get("recoveryTarget"))))
        recovery = observed.get("recovery") or {}
        started = _time(recovery.get("startTime"))
        if (recovery.get("repositoryPath") == repository_path and started is not None
                and recovery.get("phase") in _READING_PHASES):
            found.append(Restore(f"{name} (in-place recovery)", started,
                                 target=_time(recovery.get("recoveryTarget"))))
    return found


def lasting(restores: Iterable[Restore], now: datetime, limit: timedelta) -> list[Restore]:
    """The restores that still hold: begun less than ``limit`` ago."""
    return [r for r in restores if now - r.started <= limit]


def held_dumps(restores: Iterable[Restore], manifests: Sequence[Manifest]) -> set[str]:
    """The run ids of the dumps the logical ``restores`` may be reading, as the
    drill runner chooses (drill/selection.py). ``latest`` is chosen when the
    runner starts, after the restore's start: the newest dump then, or one
    complete since."""
    dumps = [m for m in manifests if has_dump(m)]
    held: set[str] = set()
    for restore in restores:
        try:
            choice = BackupChoice.parse(restore.choice or LATEST)
        except ValueError:
            continue  # the runner refuses it: it reads nothing
        if choice.kind is SelectionKind.BY_ID:
            held.add(str(choice.run_id))
            continue
        if choice.kind is SelectionKind.BEFORE:
            assert choice.before is not None
            by = choice.before
            candidates = [m for m in dumps if m.started_at <= by and m.finished_at <= by]
        else:
            candidates = [m for m in dumps if m.finished_at <= restore.started]
            held |= {m.run_id for m in dumps if m.finished_at > restore.started}
        if candidates:
            held.add(max(candidates, key=lambda m: (m.started_at, recovery_point(m),
                                                    m.finished_at)).run_id)
    return held


def endangered(restores: Iterable[Restore], request: BackupRequest,
               backups: Sequence[PhysicalBackup], now: datetime) -> list[tuple[Restore,
                                                                               PhysicalBackup]]:
    """The physical restores whose full backup the expiry after ``request``'s
    backup would remove, each with that backup."""
    found = []
    for restore in restores:
        # A restore of the latest restores what was newest when it began, not now.
        removed = expired_by(request, backups, restore.target or restore.started, now)
        if removed is not None:
            found.append((restore, removed))
    return found


@dataclass(frozen=True)
class Hold:
    """What a policy's pass does with the physical backup due."""

    reason: str | None  # why it is not asked for (None: it is)
    since: datetime | None  # since when restores have held it
    overran: bool = False  # held longer than the deadline: asked anyway


def hold(blocking: str | None, since: datetime | None, now: datetime,
         limit: timedelta) -> Hold:
    """``blocking``: why a restore is in the backup's way (None: nothing is);
    ``since``: when the hold began, as the status records it. Restores that
    follow each other hold it for ``limit`` in all, then it is asked anyway,
    until nothing is in its way."""
    if blocking is None:
        return Hold(None, None)
    since = since or now
    if now - since <= limit:
        return Hold(blocking, since)
    return Hold(None, since, overran=True)
